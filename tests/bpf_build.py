"""Build the C programs of tests/bpf_c/ into BPF objects, with the first compiler found, cached by content.

Compilers, in order: `$CLANG`, a `clang` 18 or newer on PATH, the `ziglang` package's `zig cc`
(clang with the BPF backend). A test skips only when there is none of them; a `$CLANG` that does
not run, or a program that does not compile, fails its test. Objects are cached under
`$XDG_CACHE_HOME/arena-emu/bpf` keyed by the compiler's version, the flags, the source and the
headers beside it. `-mcpu=v3` is enough for arena code: clang emits addr_space_cast and defines
__BPF_FEATURE_ADDR_SPACE_CAST whatever the cpu version; zig's clang needs only the target name.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

BPF_C = Path(__file__).parent / "bpf_c"
FLAGS = ("-O2", "-g", "-mcpu=v3")
# zig's driver asks for unwind tables, which BPF clang does not emit: an .eh_frame libbpf would skip
ZIG_FLAGS = ("-target", "bpfel-freestanding", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables")
CLANG_FLAGS = ("-target", "bpfel")
MIN_CLANG = 18


def _version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


@functools.cache
def compiler() -> tuple[tuple[str, ...], str] | None:
    """(command and target flags, version line) of the first usable compiler, or None."""
    if os.environ.get("CLANG"):
        version = _version([os.environ["CLANG"]])
        if not version:
            raise RuntimeError(f"$CLANG={os.environ['CLANG']} does not run")
        return (os.environ["CLANG"], *CLANG_FLAGS), version
    clang = shutil.which("clang")
    if clang:
        version = _version([clang])
        m = re.search(r"clang version (\d+)", version or "")
        if m and int(m.group(1)) >= MIN_CLANG:
            return (clang, *CLANG_FLAGS), version
    if importlib.util.find_spec("ziglang"):
        cmd = [sys.executable, "-m", "ziglang", "cc"]
        version = _version(cmd)
        if version:
            return (*cmd, *ZIG_FLAGS), version
    return None


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "arena-emu" / "bpf"


def build(name: str, *extra: str) -> Path:
    """tests/bpf_c/<name>.bpf.c compiled to an object; skips the test when no compiler exists at all."""
    try:
        found = compiler()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    if found is None:
        pytest.skip(f"no BPF compiler: set $CLANG, put clang {MIN_CLANG}+ on PATH, or pip install ziglang")
    cmd, version = found
    src = BPF_C / f"{name}.bpf.c"
    key = hashlib.sha256()
    for part in (version, *FLAGS, *extra, str(src.resolve()), src.read_text()):  # the path: debug info names it
        key.update(part.encode() + b"\0")
    for header in sorted(BPF_C.glob("*.h")):
        key.update(header.read_bytes())
    out = cache_dir() / key.hexdigest()[:16] / f"{name}.bpf.o"  # the file name is the object name
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".o", dir=out.parent)
    os.close(fd)
    try:
        run = subprocess.run([*cmd, *FLAGS, *extra, "-c", str(src), "-o", tmp], capture_output=True, text=True,
                             timeout=300)
        if run.returncode:
            pytest.fail(f"{src.name} does not compile with {version}:\n{run.stderr}", pytrace=False)
        os.replace(tmp, out)  # atomic: parallel workers building the same object agree
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
