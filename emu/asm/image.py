"""The link's result, in the four sections a loaded image has: text, rodata, data and bss,
each from its own base. A source's other section names map onto these or are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..x86.extable import ExtableEntry
from ..x86.unwind_orc import OrcEntry
from .declarations import BpfFunc

SECTIONS = ("text", "rodata", "data", "bss")


@dataclass
class LinkedSection:
    name: str
    start: int
    data: bytearray


@dataclass(eq=False)
class Image:
    """What the linker hands the machine: bytes per section, symbols, extable, line map."""

    sections: dict[str, LinkedSection]
    symbols: list[tuple[str, int, str, bool, str]]  # name, address, section, global, file
    extable: list[ExtableEntry]
    lines: dict[int, tuple[str, int]]  # instruction address -> (file, line)
    bpf_funcs: list[BpfFunc] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # source text by file, when not the loaded text
    source_paths: dict[str, str] = field(default_factory=dict)  # file -> its path on disk
    unwind: list[OrcEntry] = field(default_factory=list)  # compiled code's unwind table
