"""Where the shipped assembly lives: kernel_stubs/ and bpf_progs/.

In a checkout (or an editable install) they sit beside the package; a wheel
installs them under <prefix>/share/arena-emu/.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

from .errors import EmuError


def corpus_dir(name: str) -> Path:
    for base in (Path(__file__).resolve().parent.parent, Path(sys.prefix) / "share" / "arena-emu"):
        if (base / name).is_dir():
            return base / name
    raise EmuError(f"cannot find the {name}/ folder (looked beside the package and in {sys.prefix}/share/arena-emu)")


def stub(filename: str) -> str:
    return str(corpus_dir("kernel_stubs") / filename)


@functools.cache
def _kernel_functions() -> dict[str, str]:
    out = {}
    for path in sorted(corpus_dir("kernel_stubs").glob("*.S")):
        for name in re.findall(r"^\s*SYM_FUNC_START\((\w+)\)", path.read_text(), re.M):
            out.setdefault(name, str(path))
    return out


def kernel_stub_defining(name: str) -> str | None:
    """The kernel_stubs/ file that defines kernel function `name`, if any."""
    return _kernel_functions().get(name)


def bpf_prog(filename: str) -> str:
    return str(corpus_dir("bpf_progs") / filename)
