"""Kernel memory as the kernel's own accessors see it: through the page tables, never a CPU's TLB.

It owns the page tables and the frames behind them; what a CPU may still cache
is the TLB's business (emu/x86/tlb.py). Anything that may change code (a write,
a PTE, an unmap) tells `code_changed` listeners, so decoders cached by address
decode again.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import EmuError
from ..x86.pgtable import PAGE_KERNEL, PageTables, PageWalk, pte_pfn, pte_present
from .layout import MASK64, PAGE_SIZE, is_canonical
from .physmem import FrameKind, PhysMem


class KernelMemory:
    def __init__(self, mem: PhysMem, pgtables: PageTables):
        self.mem = mem
        self.pgtables = pgtables
        self.code_changed: list[Callable[[], None]] = []

    def _changed(self) -> None:
        for listener in self.code_changed:
            listener()

    def map(self, va: int, size: int = PAGE_SIZE, prot: int = PAGE_KERNEL,
            kind: FrameKind = FrameKind.DATA) -> list[int]:
        """Back [va, va+size) with fresh zeroed frames; returns their PFNs."""
        if va % PAGE_SIZE or size <= 0 or size % PAGE_SIZE:
            raise EmuError(f"map needs a page-aligned address and size, got {va:#x}+{size:#x}")
        if size > self.mem.size:
            raise EmuError(f"cannot map {size:#x} bytes: guest RAM is {self.mem.size:#x} bytes")
        pages = range(va, va + size, PAGE_SIZE)
        taken = next((p for p in pages if pte_present(self.pgtables.get_pte(p))), None)
        if taken is not None:
            raise EmuError(f"{taken:#x} is already mapped")
        pfns = []
        for page in pages:
            pfn = self.mem.alloc_frame(kind)
            self.pgtables.map(page, pfn, prot)
            pfns.append(pfn)
        return pfns

    def unmap(self, va: int, size: int = PAGE_SIZE) -> None:
        """Clear the PTEs and free the frames. No TLB flush."""
        self._changed()
        for page in range(va, va + size, PAGE_SIZE):
            old = self.pgtables.unmap(page)
            if pte_present(old):
                self.mem.free_frame(pte_pfn(old))

    def install(self, start: int, data: bytes, prot: int, kind: FrameKind) -> None:
        """Copy a loaded section in, mapping the pages it needs that are not mapped yet."""
        first, end = start & ~(PAGE_SIZE - 1), start + len(data)
        for page in range(first, end, PAGE_SIZE):
            if not pte_present(self.pgtables.get_pte(page)):
                self.pgtables.map(page, self.mem.alloc_frame(kind), prot)
        pos = 0
        while pos < len(data):
            va = start + pos
            n = min(len(data) - pos, PAGE_SIZE - va % PAGE_SIZE)
            self.mem.write(self.pgtables.translate_mapped(va), data[pos:pos + n])
            pos += n
        self._changed()

    def walk(self, va: int) -> PageWalk:
        return self.pgtables.walk(va & MASK64)

    def pte(self, va: int) -> int:
        return self.pgtables.get_pte(va)

    def set_pte(self, va: int, value: int) -> int:
        """Write a PTE as the kernel's set_pte() would: no TLB flush."""
        self._changed()
        return self.pgtables.set_pte(va, value)

    def try_read(self, va: int, length: int) -> bytes | None:
        out = bytearray()
        while length > 0:
            pa = self.pgtables.translate(va & MASK64) if is_canonical(va & MASK64) else None
            if pa is None:
                return None
            n = min(length, PAGE_SIZE - (va % PAGE_SIZE))
            if not self.mem.contains(pa, n):
                return None
            out += self.mem.read(pa, n)
            va, length = va + n, length - n
        return bytes(out)

    def read(self, va: int, length: int) -> bytes:
        data = self.try_read(va, length)
        if data is None:
            raise EmuError(f"cannot access memory at address {va:#x}")
        return data

    def write(self, va: int, data: bytes) -> None:
        self._changed()
        pos = 0
        while pos < len(data):
            pa = self.pgtables.translate(va + pos) if is_canonical(va + pos) else None
            n = min(len(data) - pos, PAGE_SIZE - ((va + pos) % PAGE_SIZE))
            if pa is None or not self.mem.contains(pa, n):
                raise EmuError(f"cannot access memory at address {va + pos:#x}")
            self.mem.write(pa, data[pos:pos + n])
            pos += n

    def read_u64(self, va: int) -> int:
        return int.from_bytes(self.read(va, 8), "little")

    def write_u64(self, va: int, value: int) -> None:
        self.write(va, (value & MASK64).to_bytes(8, "little"))

    def read_u64_or_none(self, va: int) -> int | None:
        va &= MASK64
        if va & (PAGE_SIZE - 1) <= PAGE_SIZE - 8:  # one page: the common case, and the stack walk's
            pa = self.pgtables.translate(va)
            return self.mem.read_u64(pa) if pa is not None and self.mem.contains(pa, 8) else None
        data = self.try_read(va, 8)
        return None if data is None else int.from_bytes(data, "little")

    def read_cstring(self, va: int, limit: int) -> str | None:
        """A NUL-terminated string of at most `limit` bytes; None if unreadable."""
        out = bytearray()
        while len(out) < limit:
            chunk = self.try_read(va + len(out), min(limit - len(out), PAGE_SIZE - (va + len(out)) % PAGE_SIZE))
            if chunk is None:
                return None
            nul = chunk.find(0)
            if nul >= 0:
                return (out + chunk[:nul]).decode(errors="replace")
            out += chunk
        return out.decode(errors="replace")

    def stack_reader(self) -> Callable[[int], int | None]:
        """read_u64_or_none for one stack walk, translating each page once: the walk reads
        a few words of one or two pages, and nothing changes the tables while it does."""
        pages: dict[int, int | None] = {}
        words, end, translate = self.mem.words, self.mem.size - 8, self.pgtables.translate

        def read(va: int) -> int | None:
            page, off = va & ~(PAGE_SIZE - 1) & MASK64, va & (PAGE_SIZE - 1)
            if off & 7:  # the frame walk's words are aligned; anything else goes the long way
                return self.read_u64_or_none(va)
            pa = pages[page] if page in pages else pages.setdefault(page, translate(page))
            return words[(pa + off) >> 3] if pa is not None and pa + off <= end else None
        return read
