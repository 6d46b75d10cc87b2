"""TLB flushes across CPUs (arch/x86/mm/tlb.c), and what each CPU may still hold after a PTE change."""

from __future__ import annotations

from array import array

from ..mm.layout import PAGE_SIZE
from .cpu import CPU

TLB_SINGLE_PAGE_FLUSH_CEILING = 33


class Tlb:
    def __init__(self, cpus: list[CPU]):
        self.cpus = cpus

    def flush_tlb_kernel_range(self, start: int, end: int) -> None:
        """flush_tlb_kernel_range(): every CPU; page by page up to the kernel's
        tlb_single_page_flush_ceiling (33 pages), the whole TLB beyond it."""
        pages = (end - start + PAGE_SIZE - 1) // PAGE_SIZE
        for c in self.cpus:
            if pages > TLB_SINGLE_PAGE_FLUSH_CEILING:
                c.flush_tlb_all()
            else:
                for page in range(start, end, PAGE_SIZE):
                    c.flush_tlb_one(page)

    def flush_tlb(self, cpu: int | None = None) -> None:
        """Flush the whole TLB of one CPU, or of every CPU."""
        for c in self.cpus if cpu is None else [self.cpus[cpu]]:
            c.flush_tlb_all()

    def invlpg(self, va: int, cpu: int = 0) -> None:
        self.cpus[cpu].flush_tlb_one(va)

    def pte_changed(self, va: int, old: array, new: array) -> None:
        """A page-table listener: every CPU may still hold the old present PTEs of the pages."""
        for c in self.cpus:
            c.note_pte_writes(va, old, new)
