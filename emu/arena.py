"""The BPF arena: kernel/bpf/arena.c, the version with rqspinlock and apply_to_page_range().

Creation checks and error codes follow arena_map_alloc(); alloc, free and
reserve follow arena_alloc_pages(), arena_free_pages() and
arena_reserve_pages(), with pages installed and cleared in the machine's real
page tables at kern_vm_start + (u32)user_address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .errors import EmuError
from .layout import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE
from .pgtable import PAGE_KERNEL, PageTables, mk_pte, pte_pfn, pte_present
from .physmem import FrameKind, OutOfMemory, PhysMem
from .range_tree import RangeTree

BPF_F_MMAPABLE = 1 << 10
BPF_F_SEGV_ON_FAULT = 1 << 17
BPF_F_NO_USER_CONV = 1 << 18
ARENA_FLAGS = BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT | BPF_F_NO_USER_CONV

SZ_4G = 1 << 32
GUARD_SZ = ((1 << 16) + (PAGE_SIZE << 1) - 1) & ~((PAGE_SIZE << 1) - 1)  # round_up(1 << 16, PAGE_SIZE << 1)
KERN_VM_SZ = SZ_4G + GUARD_SZ
NUMA_NO_NODE = -1
NR_NODE_IDS = 1

EINVAL, E2BIG, ERANGE, EBUSY = 22, 7, 34, 16
ERRNO_NAMES = {EINVAL: "EINVAL", E2BIG: "E2BIG", ERANGE: "ERANGE", EBUSY: "EBUSY"}

# Where arena_get_unmapped_area() put the arena in the kernel's own header example.
DEFAULT_USER_VM_START = 0x7F7D_2620_0000

_U32 = 0xFFFF_FFFF


class ArenaError(EmuError):
    """arena_map_alloc() refused: `errno` is the positive error number."""

    def __init__(self, errno: int, why: str):
        self.errno = errno
        super().__init__(f"-{ERRNO_NAMES[errno]}: {why}")


class ArenaMM(Protocol):
    """What the arena needs from the machine."""

    mem: PhysMem
    pgtables: PageTables

    def flush_tlb_kernel_range(self, start: int, end: int) -> None: ...


def clear_lo32(value: int) -> int:
    return value & ~_U32


def _round_up_4g(value: int) -> int:
    return (value + SZ_4G - 1) & ~(SZ_4G - 1)


@dataclass
class Arena:
    mm: ArenaMM
    max_entries: int
    flags: int
    user_vm_start: int
    user_vm_end: int
    kern_vm: int  # the start of the reserved vmalloc area (guard included)
    rt: RangeTree = field(default_factory=RangeTree)

    @property
    def kern_vm_start(self) -> int:
        """bpf_arena_get_kern_vm_start(): the area plus half the guard."""
        return self.kern_vm + GUARD_SZ // 2

    @property
    def page_cnt_max(self) -> int:
        return (self.user_vm_end - self.user_vm_start) >> PAGE_SHIFT

    def compute_pgoff(self, uaddr: int) -> int:
        """compute_pgoff(): wraps modulo 2^32 like the kernel's u32 arithmetic."""
        return ((uaddr - (self.user_vm_start & _U32)) & _U32) >> PAGE_SHIFT

    def kern_addr(self, uaddr: int) -> int:
        """The kernel address of an arena byte: kern_vm_start + (u32)user_address."""
        return self.kern_vm_start + (uaddr & _U32)

    def user_addr(self, pgoff: int) -> int:
        return clear_lo32(self.user_vm_start) + ((self.user_vm_start + (pgoff << PAGE_SHIFT)) & _U32)

    # -- kfuncs ---------------------------------------------------------------

    def alloc_pages(self, addr: int, page_cnt: int, node_id: int = NUMA_NO_NODE, flags: int = 0) -> int:
        """bpf_arena_alloc_pages() -> arena_alloc_pages(): a user pointer, or 0 on every error."""
        if flags != 0 or page_cnt == 0:
            return 0
        if node_id != NUMA_NO_NODE and not 0 <= node_id < NR_NODE_IDS:
            return 0
        if page_cnt > self.page_cnt_max:
            return 0
        if addr:
            if addr & ~PAGE_MASK:
                return 0
            pgoff = self.compute_pgoff(addr)
            if pgoff > self.page_cnt_max - page_cnt:
                return 0
            if not self.rt.is_range_tree_set(pgoff, page_cnt):
                return 0
        else:
            found = self.rt.range_tree_find(page_cnt)
            if found is None:
                return 0
            pgoff = found
        self.rt.range_tree_clear(pgoff, page_cnt)
        uaddr = self.user_addr(pgoff)
        kaddr = self.kern_addr(uaddr)
        installed = 0
        try:
            for i in range(page_cnt):
                if not self._apply_range_set_cb(kaddr + i * PAGE_SIZE):
                    break
                installed += 1
        except OutOfMemory:
            pass
        if installed < page_cnt:  # give the tail back to the range tree, free the head
            self.rt.range_tree_set(pgoff + installed, page_cnt - installed)
            if installed:
                self.free_pages(uaddr, installed)
            return 0
        return uaddr

    def _apply_range_set_cb(self, kaddr: int) -> bool:
        """apply_range_set_cb(): a fresh zeroed page, installed only over a none PTE (else -EBUSY)."""
        if self.mm.pgtables.get_pte(kaddr) != 0:
            return False
        pfn = self.mm.mem.alloc_frame(FrameKind.ARENA)
        self.mm.pgtables.set_pte(kaddr, mk_pte(pfn, PAGE_KERNEL))
        return True

    def free_pages(self, ptr: int, page_cnt: int) -> None:
        """bpf_arena_free_pages() -> arena_free_pages(): only the low 32 bits, rounded down."""
        if page_cnt == 0 or ptr == 0:
            return
        uaddr = ptr & _U32 & PAGE_MASK
        full_uaddr = clear_lo32(self.user_vm_start) + uaddr
        if full_uaddr >= self.user_vm_end:
            return
        end = min(full_uaddr + (page_cnt << PAGE_SHIFT), self.user_vm_end)
        page_cnt = (end - full_uaddr) >> PAGE_SHIFT
        self.rt.range_tree_set(self.compute_pgoff(uaddr), page_cnt)  # before the PTEs, as the kernel does
        kaddr = self.kern_addr(uaddr)
        for i in range(page_cnt):
            old = self.mm.pgtables.unmap(kaddr + i * PAGE_SIZE)
            if pte_present(old):
                self.mm.mem.free_frame(pte_pfn(old))
        self.mm.flush_tlb_kernel_range(kaddr, kaddr + (page_cnt << PAGE_SHIFT))

    def reserve_pages(self, ptr: int, page_cnt: int) -> int:
        """bpf_arena_reserve_pages() -> arena_reserve_pages(): 0 or -errno."""
        if page_cnt == 0:
            return 0
        if ptr & ~PAGE_MASK:
            return 0  # the kernel's quirk: a misaligned pointer "succeeds" and reserves nothing
        pgoff = self.compute_pgoff(ptr)
        if pgoff + page_cnt > self.page_cnt_max:
            return -EINVAL
        if not self.rt.is_range_tree_set(pgoff, page_cnt):
            return -EBUSY
        self.rt.range_tree_clear(pgoff, page_cnt)
        return 0


def arena_map_alloc(mm: ArenaMM, kern_vm: int, max_entries: int, map_extra: int = 0,
                    flags: int = BPF_F_MMAPABLE, key_size: int = 0, value_size: int = 0) -> Arena:
    """arena_map_alloc(): the checks and error codes of map creation.

    `kern_vm` is the reserved vmalloc area (KERN_VM_SZ bytes, no PTEs). With
    map_extra 0 the kernel places the arena at the first mmap; the model does
    that mmap now, where arena_get_unmapped_area() would: the header example's
    address, moved up to a 4 GiB boundary if the arena would cross one.
    """
    if key_size or value_size or max_entries == 0 or not flags & BPF_F_MMAPABLE or flags & ~ARENA_FLAGS:
        raise ArenaError(EINVAL, "key/value size, max_entries or flags")
    if map_extra & ~PAGE_MASK:
        raise ArenaError(EINVAL, f"map_extra {map_extra:#x} is not page-aligned")
    vm_range = max_entries * PAGE_SIZE
    if vm_range > SZ_4G:
        raise ArenaError(E2BIG, f"{max_entries} pages is more than 4 GiB")
    if map_extra and map_extra >> 32 != (map_extra + vm_range - 1) >> 32:
        raise ArenaError(ERANGE, f"[{map_extra:#x}, +{vm_range:#x}) crosses a 4 GiB boundary")
    start = map_extra
    if not start:
        start = DEFAULT_USER_VM_START
        if start >> 32 != (start + vm_range - 1) >> 32:
            start = _round_up_4g(start)
    arena = Arena(mm, max_entries, flags, start, start + vm_range, kern_vm)
    arena.rt.range_tree_set(0, max_entries)
    return arena
