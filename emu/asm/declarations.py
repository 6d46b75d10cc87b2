"""What a BPF object declares in its .S file: its arena maps, the kernel
functions it calls, and which of its functions are BPF programs.

The machine meets the first two before the link (it creates the maps and
loads the kernel functions); the third comes out of the link, as addresses.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BpfFunc:
    """A function a file declares as BPF: `main` is None for a main program."""

    name: str
    main: str | None
    start: int
    end: int
    file: str
    line: int


@dataclass(frozen=True)
class ArenaDecl:
    """BPF_ARENA(name, max_entries[, map_extra[, map_flags]]): the arena map a BPF object declares."""

    name: str
    params: dict[str, int]
    file: str
    line: int


@dataclass(frozen=True)
class Declarations:
    """What a BPF object asks of the kernel before it can be linked: its arena maps, and the
    kernel functions it calls (`extern ... __ksym` in BPF C, BPF_KSYM(name) here)."""

    arenas: list[ArenaDecl]
    ksyms: list[tuple[str, str, int]]  # name, file, line
