"""Exception tables (kernel/extable.c, arch/x86/mm/extable.c).

An entry says: a fault at `insn` is fixed up by the handler of `type`. The
table is sorted by address and searched by bisection, as search_extable() does.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

EX_TYPE_DEFAULT = 1  # _ASM_EXTABLE(from, to): continue at the fixup label
EX_TYPE_BPF = 7  # the JIT's entries: ex_handler_bpf() (arch/x86/include/asm/extable_fixup_types.h)

EX_TYPE_NAMES = {EX_TYPE_DEFAULT: "EX_TYPE_DEFAULT", EX_TYPE_BPF: "EX_TYPE_BPF"}


@dataclass(frozen=True)
class ExtableEntry:
    insn: int
    fixup: int  # EX_TYPE_DEFAULT: the fixup address; EX_TYPE_BPF: the JIT's fixup word
    type: int = EX_TYPE_DEFAULT
    data: int = 0

    @property
    def type_name(self) -> str:
        return EX_TYPE_NAMES.get(self.type, f"type {self.type}")

    def __repr__(self) -> str:
        return f"ExtableEntry(insn={self.insn:#x}, fixup={self.fixup:#x}, {self.type_name})"


class ExceptionTable:
    def __init__(self) -> None:
        self._addrs: list[int] = []
        self._entries: list[ExtableEntry] = []

    def add(self, entry: ExtableEntry) -> None:
        i = bisect.bisect_left(self._addrs, entry.insn)
        if i < len(self._addrs) and self._addrs[i] == entry.insn:
            raise ValueError(f"two exception-table entries for {entry.insn:#x}")
        self._addrs.insert(i, entry.insn)
        self._entries.insert(i, entry)

    def search_exception_tables(self, ip: int) -> ExtableEntry | None:
        i = bisect.bisect_left(self._addrs, ip)
        if i < len(self._addrs) and self._addrs[i] == ip:
            return self._entries[i]
        return None
