"""Where the shipped assembly lives: kernel_stubs/ and bpf_progs/.

In a checkout (or an editable install) they sit beside the package; a wheel
installs them under <prefix>/share/arena-emu/.
"""

from __future__ import annotations

import contextlib
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
    out: dict[str, str] = {}
    for path in sorted(corpus_dir("kernel_stubs").glob("*.S")):
        for name in re.findall(r"^\s*SYM_FUNC_START\((\w+)\)", path.read_text(), re.M):
            out.setdefault(name, str(path))
    return out


def kernel_stub_defining(name: str) -> str | None:
    """The kernel_stubs/ file that defines kernel function `name`, if any."""
    return _kernel_functions().get(name)


def bpf_prog(filename: str) -> str:
    return str(corpus_dir("bpf_progs") / filename)


def source_candidates(path: str | Path, *roots: Path) -> list[Path]:
    """Where a named file may be: as given, under each of `roots`, and, for `bpf_progs/X` or
    `kernel_stubs/X`, the shipped copy, so the README's commands work from any directory."""
    if path == "":  # Path("") is ".", and os.path.relpath("") a ValueError
        raise EmuError("a file name is empty")
    p = Path(path)
    out = [p, *(root / p for root in roots if not p.is_absolute())]
    top, _, rest = p.as_posix().partition("/")
    if top in ("bpf_progs", "kernel_stubs") and rest:
        with contextlib.suppress(EmuError):
            out.append(corpus_dir(top) / rest)
    return list(dict.fromkeys(out))


def find_source(path: str | Path, *roots: Path) -> Path:
    """The first of source_candidates() that is a file; a miss names every place looked."""
    candidates = source_candidates(path, *roots)
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise EmuError(f"cannot read {path}: no such file (looked at {', '.join(map(str, candidates))})")
    return found
