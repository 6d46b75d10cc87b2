"""Symbol lookup for reports (kernel/kallsyms.c).

Like kallsyms_lookup_size_offset(), a symbol's size is the distance to the next
symbol (or to the end of its section), so `%pS` prints `name+0xoff/0xsize`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ..errors import SymbolError


@dataclass(frozen=True)
class Symbol:
    name: str
    address: int
    section: str  # "text", "rodata", "data", "bss", "abs"
    is_global: bool
    file: str
    display: str = ""  # the name reports print, when not `name` (JITed BPF: bpf_prog_<tag>_<name>)


@dataclass(frozen=True)
class Location:
    """An address as kallsyms names it."""

    symbol: Symbol
    offset: int
    size: int

    def __str__(self) -> str:
        return f"{self.symbol.display or self.symbol.name}+{self.offset:#x}/{self.size:#x}"


class Kallsyms:
    def __init__(self) -> None:
        self._by_name: dict[str, list[Symbol]] = {}
        self._addrs: list[int] = []
        self._syms: list[Symbol] = []
        self._ends: list[tuple[int, int]] = []  # (start, end) of every loaded section
        self._looked_up: dict[int, Location | None] = {}  # every fault and report asks again
        self._formatted: dict[int, str] = {}

    def add_section(self, start: int, end: int) -> None:
        self._ends.append((start, end))
        self._forget()

    def _forget(self) -> None:
        self._looked_up.clear()
        self._formatted.clear()

    def add(self, sym: Symbol) -> None:
        self._forget()
        self._by_name.setdefault(sym.name, []).append(sym)
        if sym.section == "abs":
            return
        i = bisect.bisect_right(self._addrs, sym.address)
        self._addrs.insert(i, sym.address)
        self._syms.insert(i, sym)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def lookup_name(self, name: str) -> int:
        """The address of `name`: a global symbol, else the only local one of that name."""
        syms = self._by_name.get(name)
        if not syms:
            raise SymbolError(f"no symbol \"{name}\" in the loaded files")
        globals_ = [s for s in syms if s.is_global]
        if len(globals_) == 1:
            return globals_[0].address
        if len(syms) == 1:
            return syms[0].address
        files = ", ".join(sorted(s.file for s in syms))
        raise SymbolError(f"symbol \"{name}\" is ambiguous: it is defined in {files}")

    def global_symbols(self) -> dict[str, Symbol]:
        return {name: s for name, syms in self._by_name.items() for s in syms if s.is_global}

    def symbols(self) -> list[Symbol]:
        return [s for syms in self._by_name.values() for s in syms]

    def _section_end(self, addr: int) -> int | None:
        for start, end in self._ends:
            if start <= addr < end:
                return end
        return None

    def lookup(self, addr: int) -> Location | None:
        """kallsyms_lookup_size_offset(): None when no loaded section holds `addr`."""
        try:
            return self._looked_up[addr]
        except KeyError:
            loc = self._looked_up[addr] = self._lookup(addr)
            return loc

    def _lookup(self, addr: int) -> Location | None:
        end = self._section_end(addr)
        if end is None:
            return None
        i = bisect.bisect_right(self._addrs, addr) - 1
        # Several names may share an address (an alias, a label at a function's start):
        # take the first defined, as kallsyms would take the one it sorted first.
        while i > 0 and self._addrs[i - 1] == self._addrs[i]:
            i -= 1
        if i < 0:
            return None
        sym = self._syms[i]
        if self._section_end(sym.address) != end:
            return None
        j = bisect.bisect_right(self._addrs, sym.address)
        nxt = self._addrs[j] if j < len(self._addrs) and self._addrs[j] < end else end
        return Location(sym, addr - sym.address, nxt - sym.address)

    def format(self, addr: int) -> str:
        """`%pS`: `name+0xoff/0xsize`, or the bare address when no symbol covers it."""
        try:
            return self._formatted[addr]
        except KeyError:
            loc = self.lookup(addr)
            text = self._formatted[addr] = str(loc) if loc is not None else f"{addr:#x}"
            return text
