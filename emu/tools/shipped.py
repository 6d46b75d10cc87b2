"""The BPF objects shipped in bpf_progs/, built from their C, so the demo and `compare` run
with no compiler installed; and the check that none of them is stale.

bpf_progs/objects.json records, for each NAME.bpf.o, what it was built from: a digest of
NAME.bpf.c and of emu/include/bpf_arena_common.h, the compiler flags, the compiler's
version line, and a digest of the object. An object is stale when its source, the header or
the flags changed since (checked with no compiler), or when the same compiler version now
builds different bytes. A different clang version may emit different code for the same C,
so then only the source digest speaks. Objects are built with the checkout's path mapped
away (-ffile-prefix-map), so their line info names `./NAME.bpf.c` wherever they are
built, and two checkouts build the same bytes.

Rebuild them all with `python -m emu.tools.shipped`; `--check` reports stale ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

from ..bpf.btf_ext import BPF_INSN_SZ
from ..bpf.object_file import BpfObject
from ..corpus import corpus_dir
from ..errors import EmuError
from .build import BPF_CFLAGS, INCLUDE, Compiler, bpf_compiler, build_bpf

MANIFEST = "objects.json"


@dataclass(frozen=True)
class Provenance:
    """What one shipped object was built from, as the manifest records it."""

    source: str  # sha256 of NAME.bpf.c, then of each shipped header
    flags: tuple[str, ...]
    compiler: str  # which compiler and its version line
    object: str  # sha256 of NAME.bpf.o

    def to_json(self) -> dict:
        return {"source": self.source, "flags": list(self.flags), "compiler": self.compiler, "object": self.object}


def sources(folder: Path | None = None) -> list[Path]:
    """The programs in C that ship as objects: every bpf_progs/*.bpf.c."""
    return sorted((folder or corpus_dir("bpf_progs")).glob("*.bpf.c"))


def object_of(src: Path) -> Path:
    return src.with_name(src.name.removesuffix(".c") + ".o")


def source_digest(src: Path) -> str:
    h = hashlib.sha256(src.read_bytes())
    for header in sorted(INCLUDE.glob("*.h")):
        h.update(header.name.encode() + b"\0" + header.read_bytes())
    return h.hexdigest()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(src: Path, out: Path) -> Path:
    """Build with the checkout's paths mapped away: the line info names ./NAME.bpf.c, which clang,
    running in the source's folder, reads again for .BTF.ext's line texts (a check here makes sure
    it found them), and the header emu/include/bpf_arena_common.h."""
    obj = build_bpf(src, out, (f"-ffile-prefix-map={src.resolve().parent}=.",
                               f"-ffile-prefix-map={INCLUDE}=emu/include"))
    opened = BpfObject.open(str(obj))
    if not any(li is not None and li.line for prog in opened.programs
               for i in range(len(prog.insns) // BPF_INSN_SZ) if (li := opened.source_line(prog, i)) is not None):
        raise EmuError(f"{obj}: its .BTF.ext holds no source line texts: clang did not find {src.name} again")
    return obj


def read_manifest(folder: Path) -> dict[str, Provenance]:
    path = folder / MANIFEST
    try:
        doc = json.loads(path.read_text())
        return {name: Provenance(e["source"], tuple(e["flags"]), e["compiler"], e["object"]) for name, e in doc.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise EmuError(f"cannot read {path}: {e}") from None


def rebuild(folder: Path) -> dict[str, Provenance]:
    """Build every program's object in place and record it in the manifest."""
    compiler = bpf_compiler()
    manifest = {}
    for src in sources(folder):
        obj = build(src, object_of(src))
        manifest[obj.name] = Provenance(source_digest(src), BPF_CFLAGS, compiler_identity(compiler), _digest(obj))
    (folder / MANIFEST).write_text(json.dumps({k: v.to_json() for k, v in manifest.items()}, indent=2) + "\n")
    return manifest


def stale_without_compiler(folder: Path) -> list[str]:
    """Each object missing, unrecorded, or recorded from other source, header, flags or bytes: one line each."""
    manifest = read_manifest(folder)
    problems = []
    for src in sources(folder):
        obj = object_of(src)
        got = manifest.get(obj.name)
        if not obj.is_file() or got is None:
            problems.append(f"{obj}: {'not built' if not obj.is_file() else 'not in ' + MANIFEST}")
        elif got.source != source_digest(src):
            problems.append(f"{obj}: stale, {src.name} or bpf_arena_common.h changed since it was built")
        elif got.flags != BPF_CFLAGS:
            problems.append(f"{obj}: stale, built with {' '.join(got.flags)}, the flags are now {' '.join(BPF_CFLAGS)}")
        elif got.object != _digest(obj):
            problems.append(f"{obj}: not the object {MANIFEST} records (rebuild, do not edit it)")
    problems += [f"{folder / name}: in {MANIFEST} but its source is gone" for name in manifest
                 if not (folder / name.replace(".bpf.o", ".bpf.c")).is_file()]
    return problems


def compiler_identity(compiler: Compiler) -> str:
    """The compiler as the manifest names it: zig's clang and a clang of the same version may differ."""
    return f"{compiler.name}: {compiler.version}"


def section_bytes(path: Path) -> dict[str, bytes]:
    with open(path, "rb") as f:
        return {s.name: s.data() for s in ELFFile(f).iter_sections() if s.header.sh_type != "SHT_NOBITS"}


def stale_against_compiler(folder: Path) -> list[str]:
    """With a compiler at hand: each object the same compiler version now builds differently, naming
    the sections that differ. Objects recorded from another compiler version are only rebuilt, to
    show their C still compiles."""
    compiler = bpf_compiler()
    manifest = read_manifest(folder)
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources(folder):
            fresh = build(src, Path(tmp) / object_of(src).name)
            got = manifest.get(fresh.name)
            if got is None or got.compiler != compiler_identity(compiler) or not object_of(src).is_file():
                continue
            old, new = section_bytes(object_of(src)), section_bytes(fresh)
            differ = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
            if differ:
                problems.append(f"{object_of(src)}: stale, {compiler_identity(compiler)} now builds other bytes in "
                                f"{', '.join(differ)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emu.tools.shipped", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="report stale objects, build nothing in place")
    ns = ap.parse_args(argv)
    folder = Path(__file__).resolve().parent.parent.parent / "bpf_progs"
    try:
        if ns.check:
            problems = stale_without_compiler(folder) + stale_against_compiler(folder)
            print("\n".join(problems) or "every shipped object is current")
            return 1 if problems else 0
        for name, p in rebuild(folder).items():
            print(f"{folder / name}: {p.object[:16]} ({p.compiler})")
    except EmuError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
