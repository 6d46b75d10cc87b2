"""`arena-emu build`: compile C with the first compiler found, with the flags the kernel uses.

BPF programs (`X.bpf.c`): `$CLANG`, a clang 18 or newer, or the ziglang package's clang, with
the arena selftests' flags (-O2 -g -mcpu=v3) and emu/include/bpf_arena_common.h on the include
path, so no kernel tree or libbpf headers are needed.

Kernel code (`--kernel`): `$CC`, gcc, clang, or the ziglang package's `zig cc`,
with the x86-64 kernel's code-generation flags (arch/x86/Makefile and the top
Makefile: the kernel code model, no red zone, no SSE, frame pointers kept,
no stack protector, no PIC). Leaf functions keep their frame pointer too: the
stack walks here are the frame-pointer unwinder's (unwind_frame.c), which, unlike
the kernel's default ORC unwinder, cannot see past a frameless leaf. Objects are cached by the compiler's version, the
flags, the source and the headers beside it, so tests and the CLI build each
file once.
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
from dataclasses import dataclass
from pathlib import Path

from ..errors import EmuError

KERNEL_CFLAGS = (
    "-c", "-O2", "-g", "-std=gnu11", "-ffreestanding", "-fno-builtin", "-nostdinc",
    "-mcmodel=kernel", "-fno-pic", "-fno-PIE", "-mno-red-zone",
    "-mno-sse", "-mno-mmx", "-mno-sse2", "-mno-3dnow", "-mno-avx", "-mno-80387",
    "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-fno-optimize-sibling-calls",
    "-fno-stack-protector", "-fno-common",
    "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-fcf-protection=none", "-fno-strict-aliasing",
)
ZIG_KERNEL_TARGET = ("-target", "x86_64-freestanding-none")
BPF_CFLAGS = ("-c", "-O2", "-g", "-mcpu=v3")
CLANG_BPF_TARGET = ("-target", "bpfel")
# zig's driver asks for unwind tables, which BPF clang does not emit: an .eh_frame libbpf would skip
ZIG_BPF_TARGET = ("-target", "bpfel-freestanding", "-fno-unwind-tables", "-fno-asynchronous-unwind-tables")
MIN_CLANG = 18
INCLUDE = Path(__file__).resolve().parent.parent / "include"


class BuildError(EmuError):
    """No build: the source cannot be read, or no compiler runs."""


class CompileError(BuildError):
    """The compiler refused the source: its own messages, as it printed them."""


@dataclass(frozen=True)
class Compiler:
    command: tuple[str, ...]
    version: str

    @property
    def name(self) -> str:
        return "zig cc" if "ziglang" in self.command else os.path.basename(self.command[0])


def _version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out.strip() else None


def kernel_compilers() -> list[Compiler]:
    """Every compiler for kernel code found here, in the order they are preferred."""
    found = []
    if os.environ.get("CC"):
        version = _version([os.environ["CC"]])
        if version is None:
            raise BuildError(f"$CC={os.environ['CC']} does not run")
        found.append(Compiler((os.environ["CC"],), version))
    for name in ("gcc", "clang"):
        path = shutil.which(name)
        if path and (version := _version([path])):
            found.append(Compiler((path,), version))
    if importlib.util.find_spec("ziglang"):
        cmd = [sys.executable, "-m", "ziglang", "cc"]
        if version := _version(cmd):
            found.append(Compiler((*cmd, *ZIG_KERNEL_TARGET), version))
    return found


@functools.cache
def kernel_compiler() -> Compiler:
    """The first of $CC, gcc, clang and zig cc that runs."""
    found = kernel_compilers()
    if not found:
        raise BuildError("no C compiler for kernel code: set $CC, install gcc or clang, or pip install ziglang")
    return found[0]


@functools.cache
def bpf_compiler() -> Compiler:
    """The first of $CLANG, a clang 18 or newer, and zig's clang that runs, with its BPF target flags."""
    if os.environ.get("CLANG"):
        version = _version([os.environ["CLANG"]])
        if version is None:
            raise BuildError(f"$CLANG={os.environ['CLANG']} does not run")
        return Compiler((os.environ["CLANG"], *CLANG_BPF_TARGET), version)
    clang = shutil.which("clang")
    if clang and (version := _version([clang])):
        m = re.search(r"clang version (\d+)", version)
        if m and int(m.group(1)) >= MIN_CLANG:
            return Compiler((clang, *CLANG_BPF_TARGET), version)
    if importlib.util.find_spec("ziglang"):
        cmd = [sys.executable, "-m", "ziglang", "cc"]
        if version := _version(cmd):
            return Compiler((*cmd, *ZIG_BPF_TARGET), version)
    raise BuildError(f"no BPF compiler: set $CLANG, put clang {MIN_CLANG}+ on PATH, or pip install ziglang "
                     "(arena-emu[clang])")


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "arena-emu"


def _key(compiler: Compiler, flags: tuple[str, ...], src: Path) -> str:
    h = hashlib.sha256()
    for part in (compiler.version, *compiler.command[1:], *flags, str(src.resolve())):  # debug info names the path
        h.update(part.encode() + b"\0")
    h.update(src.read_bytes())
    for header in [*sorted(src.parent.glob("**/*.h")), *sorted(INCLUDE.glob("**/*.h"))]:
        h.update(header.name.encode() + b"\0" + header.read_bytes())
    return h.hexdigest()[:24]


def build_bpf(src: str | Path, out: str | Path | None = None, extra: tuple[str, ...] = ()) -> Path:
    """Compile one BPF C file; returns the object (cached when `out` is None)."""
    src = Path(src)
    if not src.is_file():
        raise BuildError(f"cannot read {src}: no such file")
    return _compile(src, out, bpf_compiler(), (*BPF_CFLAGS, "-I", str(INCLUDE), "-I", ".", *extra), "bpf",
                    src.name.removesuffix(".c"))


def build_kernel(src: str | Path, out: str | Path | None = None, compiler: Compiler | None = None,
                 extra: tuple[str, ...] = ()) -> Path:
    """Compile one C file as kernel code; returns the object (cached when `out` is None)."""
    src = Path(src)
    if not src.is_file():
        raise BuildError(f"cannot read {src}: no such file")
    flags = (*KERNEL_CFLAGS, "-I", ".", *(("-I", "include") if (src.parent / "include").is_dir() else ()), *extra)
    return _compile(src, out, compiler or kernel_compiler(), flags, "kernel", src.stem)


def _compile(src: Path, out: str | Path | None, compiler: Compiler, flags: tuple[str, ...], kind: str,
             stem: str) -> Path:
    """Run the compiler from the source's folder (so the debug info names the file as written beside
    it) into `out`, or into the cache, whole or not at all: parallel tests may build the same file."""
    cached = cache_dir() / kind / f"{stem}-{_key(compiler, flags, src)}.o"
    target = Path(out).resolve() if out is not None else cached
    if out is None and target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        proc = subprocess.run([*compiler.command, *flags, src.name, "-o", str(partial.resolve())],
                              capture_output=True, text=True, cwd=src.parent)
        if proc.returncode != 0:
            raise CompileError((proc.stderr or proc.stdout).rstrip() or f"{compiler.name} failed on {src}")
        os.replace(partial, target)
    return target
