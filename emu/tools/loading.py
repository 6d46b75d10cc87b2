"""What the files named to `run`, `debug`, `explore`, a scenario or the plugin's `load` become in a
machine: C built first, the kernel code (assembly, x86-64 objects) linked as one unit, then at most
one BPF object, loaded as libbpf loads it, whose programs are then called by name like any function."""

from __future__ import annotations

from collections.abc import Sequence

from ..bpf.elf import is_bpf_object
from ..bpf.object_load import LoadedObject
from ..errors import EmuError
from ..machine import Machine
from .build import build_bpf, build_kernel


def built(path: str) -> str:
    """The file to load for `path`: a BPF program in C (`.bpf.c`) built for the BPF target, kernel C
    (`.c`) with the kernel's flags, anything else as it is (each build cached by content)."""
    if path.endswith(".bpf.c"):
        return str(build_bpf(path))
    return str(build_kernel(path)) if path.endswith(".c") else path


def load_files(m: Machine, paths: Sequence[str], syntax: str = "att") -> LoadedObject | None:
    """Load the kernel files, then the BPF object if one is named (after them: its kfuncs resolve
    against them); returns the object."""
    objects = [p for p in paths if is_bpf_object(p)]
    if len(objects) > 1:
        raise EmuError(f"one BPF object at a time, not {len(objects)}: {', '.join(objects)}")
    m.load(*(p for p in paths if p not in objects), syntax=syntax)
    return m.load_bpf(objects[0]) if objects else None
