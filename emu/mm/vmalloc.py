"""The vmalloc area (mm/vmalloc.c): kernel virtual ranges handed out upward, a guard page after each."""

from __future__ import annotations

from ..x86.pgtable import PAGE_KERNEL
from .layout import PAGE_SIZE, VMALLOC_START
from .memory import KernelMemory

VMALLOC_DATA_START = VMALLOC_START + 0x1000_0000  # below it: the CPUs' kernel stacks


class VmallocArea:
    def __init__(self, memory: KernelMemory, start: int = VMALLOC_DATA_START):
        self.memory = memory
        self._cursor = start

    def get_vm_area(self, size: int) -> int:
        """get_vm_area(): reserve address space, no PTEs, an unmapped page after it."""
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        va = self._cursor
        self._cursor += size + PAGE_SIZE
        return va

    def vmalloc(self, size: int, prot: int = PAGE_KERNEL) -> int:
        """vmalloc(): mapped, zeroed memory, with an unmapped page after it."""
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        self.memory.map(self._cursor, size, prot)
        return self.get_vm_area(size)
