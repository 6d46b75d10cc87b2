"""The BPF arena: kernel/bpf/arena.c, the version with rqspinlock and apply_to_page_range().

Creation checks and error codes follow arena_map_alloc(); alloc, free and
reserve follow arena_alloc_pages(), arena_free_pages() and
arena_reserve_pages(), with pages installed and cleared in the machine's real
page tables at kern_vm_start + (u32)user_address.
"""

from __future__ import annotations

import functools
import operator
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import compress, repeat
from typing import Protocol

from ..errors import EmuError
from ..mm.layout import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE
from ..mm.physmem import FrameKind, OutOfMemory, PhysMem
from ..policy import MAP_ALWAYS, SCRATCH, Policy
from ..x86.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PRESENT,
    PAGE_KERNEL,
    PAGE_KERNEL_RO,
    PAGE_USER,
    PTE_PFN_MASK,
    PTRS_PER_TABLE,
    PageTables,
    index,
    mk_pte,
    pte_pfn,
    pte_present,
)
from .range_tree import RangeTree

# offsetof(struct bpf_arena, user_vm_start) in the shipped header's layout (bpf_arena_common.h: 256 bytes of struct
# bpf_map first), where the map's struct stand-in holds user_vm_start and user_vm_end for arena_base()
BPF_ARENA_USER_VM_START = 256
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

FREE_BEFORE_FLUSH = "free-before-flush"  # a preemption point of arena_free_pages()


class ArenaError(EmuError):
    """arena_map_alloc() refused: `errno` is the positive error number."""

    def __init__(self, errno: int, why: str):
        self.errno = errno
        super().__init__(f"-{ERRNO_NAMES[errno]}: {why}")


class SegmentationFault(EmuError):
    """A user-space access the arena's VMA refuses: the process gets SIGSEGV."""

    def __init__(self, address: int, why: str):
        self.address = address
        super().__init__(f"SIGSEGV at {address:#x}: {why}")


class ArenaMM(Protocol):
    """What the arena needs from the machine."""

    mem: PhysMem
    pgtables: PageTables

    def flush_tlb_kernel_range(self, start: int, end: int) -> None: ...


def clear_lo32(value: int) -> int:
    return value & ~_U32


def _table_runs(va: int, page_cnt: int) -> Iterator[tuple[int, int]]:
    """Split a run of pages where it crosses from one PTE table to the next."""
    while page_cnt:
        n = min(page_cnt, PTRS_PER_TABLE - index("PTE", va))
        yield va, n
        va, page_cnt = va + n * PAGE_SIZE, page_cnt - n


_ACCESSED_DIRTY = _PAGE_ACCESSED | _PAGE_DIRTY


@functools.cache
def _progression(n: int) -> tuple[int, int, int]:
    """n little-endian 64-bit lanes read as one integer: lanes of 1, lanes 0, PAGE_SIZE,
    2 * PAGE_SIZE, ..., and lanes of every bit but the accessed and dirty ones."""
    return (int.from_bytes(array("Q", [1]) * n, "little"),
            int.from_bytes(array("Q", range(0, n * PAGE_SIZE, PAGE_SIZE)), "little"),
            int.from_bytes(array("Q", [~_ACCESSED_DIRTY & (1 << 64) - 1]) * n, "little"))


def _frame_runs(ptes: array) -> list[range | list[int]]:
    """The frames a table's PTEs map: a run of consecutive PFNs, or a list of them. Pages
    allocated at once map consecutive frames with the same flags (but the accessed and dirty
    bits the CPU set), upwards for never-used frames and downwards for reused ones (the free
    list gives back its last first). That case is checked with one big-integer comparison of
    the whole table, `first * ones +/- steps` (with every lane of both sides in [0, 2**64),
    equal integers mean equal lanes), not a Python step per PTE."""
    first, n = ptes[0] & ~_ACCESSED_DIRTY, len(ptes)
    if first & _PAGE_PRESENT:
        ones, steps, mask = _progression(n)
        table = int.from_bytes(ptes, "little") & mask
        pfn = (first & PTE_PFN_MASK) >> PAGE_SHIFT
        if first + (n - 1) * PAGE_SIZE < 1 << 64 and table == first * ones + steps:
            return [range(pfn, pfn + n)]
        if pfn >= n - 1 and table == first * ones - steps:
            return [range(pfn - n + 1, pfn + 1)]
    present = compress(ptes, map(operator.and_, ptes, repeat(_PAGE_PRESENT)))
    pfns = list(map(operator.rshift, map(operator.and_, present, repeat(PTE_PFN_MASK)), repeat(PAGE_SHIFT)))
    return [pfns] if pfns else []


def _without(frames: range | list[int], pfn: int) -> range | list[int]:
    """The frames but `pfn` (the arena's shared page, which a free leaves alone)."""
    if pfn not in frames:
        return frames
    if isinstance(frames, range):
        return [*frames[:pfn - frames.start], *frames[pfn - frames.start + 1:]]
    return [f for f in frames if f != pfn]


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
    name: str = "arena"
    map_ptr: int = 0  # the kernel address of the map, what kfuncs take as p__map
    policy: Policy = field(default_factory=Policy)
    scratch_pfn: int | None = None  # the scratch page (scratch policies)
    garbage_pfn: int | None = None  # RFC 2/9's garbage page (map-always)

    @property
    def scratch_pte(self) -> int:
        if self.scratch_pfn is None:
            raise EmuError(f"arena '{self.name}' has no scratch page (policy {self.policy.name})")
        return mk_pte(self.scratch_pfn, PAGE_KERNEL_RO if self.policy.scratch_readonly else PAGE_KERNEL)

    def is_scratch(self, pte: int) -> bool:
        return self.scratch_pfn is not None and pte_present(pte) and pte_pfn(pte) == self.scratch_pfn

    def is_garbage(self, pte: int) -> bool:
        return self.garbage_pfn is not None and pte_present(pte) and pte_pfn(pte) == self.garbage_pfn

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
            for va, n in _table_runs(kaddr, page_cnt):
                done = self._apply_range_set_cb(va, n)
                installed += done
                if done < n:
                    break
        except OutOfMemory:
            pass
        if installed < page_cnt:  # give the tail back to the range tree, free the head
            self.rt.range_tree_set(pgoff + installed, page_cnt - installed)
            if installed:
                self.free_pages(uaddr, installed)
            return 0
        return uaddr

    def _apply_range_set_cb(self, kaddr: int, n: int) -> int:
        """apply_range_set_cb() over n PTEs of one table: a fresh zeroed page for each, installed
        over a none PTE; the first PTE it may not replace stops it (-EBUSY). Returns how many.

        What it may replace is the policy's: `scratch` (f64c723741c9) replaces the scratch
        page: ptep_get_and_clear(), flush_tlb_before_set() (a no-op on x86, a flush with the
        flush-on-replace knob), set; `scratch-v1` does not, so allocation over a scratched
        page fails every time; `map-always` replaces the garbage page (the RFC's text for its
        TLB handling is not recovered: the model flushes it).
        """
        ptes = self.mm.pgtables.get_ptes(kaddr, n)
        ok = next((i for i, v in enumerate(ptes) if v and not self._replaceable(v)), n) if any(ptes) else n
        if ok:
            pfns = self.mm.mem.alloc_frames(FrameKind.ARENA, ok)
            self.mm.pgtables.set_ptes(kaddr, array("Q", [mk_pte(pfn, PAGE_KERNEL) for pfn in pfns]))
            for i in range(ok):
                if ptes[i] and (self.policy.name == MAP_ALWAYS or self.policy.flush_on_replace):
                    self.mm.flush_tlb_kernel_range(kaddr + i * PAGE_SIZE, kaddr + (i + 1) * PAGE_SIZE)
        return ok

    def _replaceable(self, pte: int) -> bool:
        return (self.policy.name == SCRATCH and self.is_scratch(pte)) or (
            self.policy.name == MAP_ALWAYS and self.is_garbage(pte))

    def free_pages(self, ptr: int, page_cnt: int) -> None:
        """bpf_arena_free_pages() -> arena_free_pages(): only the low 32 bits, rounded down.

        The range goes back to the range tree first, then the kernel PTEs are cleared,
        the kernel range flushed, the user mappings zapped, and the pages freed.
        """
        for _point in self.free_pages_steps(ptr, page_cnt):
            pass

    def free_pages_steps(self, ptr: int, page_cnt: int) -> Iterator[str]:
        """free_pages(), stopping at FREE_BEFORE_FLUSH: the PTEs are cleared and (unless the
        flush-before-release knob is on) the range is back in the allocator, but no TLB has
        been flushed yet; a CPU that still holds a translation can write to the old page."""
        if page_cnt == 0 or ptr == 0:
            return
        uaddr = ptr & _U32 & PAGE_MASK
        full_uaddr = clear_lo32(self.user_vm_start) + uaddr
        if full_uaddr >= self.user_vm_end:
            return
        end = min(full_uaddr + (page_cnt << PAGE_SHIFT), self.user_vm_end)
        page_cnt = (end - full_uaddr) >> PAGE_SHIFT
        pgoff = self.compute_pgoff(uaddr)
        if not self.policy.flush_before_release:
            self.rt.range_tree_set(pgoff, page_cnt)  # the kernel's order: the range is reusable from here
        kaddr = self.kern_addr(uaddr)
        frames = self._clear_ptes(kaddr, page_cnt, self._freed_pte())  # apply_range_clear_cb()
        yield FREE_BEFORE_FLUSH
        self.mm.flush_tlb_kernel_range(kaddr, kaddr + (page_cnt << PAGE_SHIFT))
        if self.policy.flush_before_release:
            self.rt.range_tree_set(pgoff, page_cnt)
        self.zap_pages(full_uaddr, page_cnt)
        self.mm.mem.free_frames(frames)

    def _freed_pte(self) -> int:
        """What a freed page's PTE becomes: none, or under map-always the garbage page again."""
        return mk_pte(self.garbage_pfn, PAGE_KERNEL) if self.garbage_pfn is not None else 0

    def _clear_ptes(self, va: int, page_cnt: int, value: int = 0) -> list[range | list[int]]:
        """Set the PTEs of a range to `value` (none), one table at a time; returns the frames
        they mapped, a group per table, the arena's shared scratch or garbage page excepted."""
        frames: list[range | list[int]] = []
        for start, n in _table_runs(va, page_cnt):
            ptes = self.mm.pgtables.get_ptes(start, n)
            if any(ptes) or value:
                frames += _frame_runs(ptes)
                self.mm.pgtables.set_ptes(start, array("Q", [value]) * n)
        for shared in (self.scratch_pfn, self.garbage_pfn):
            if shared is not None:
                frames = [_without(group, shared) for group in frames]
        return frames

    def arena_map_free(self) -> None:
        """arena_map_free(): free every page still mapped (the scratch page once, at the end),
        clear the kernel range and drop user space's mappings."""
        self.zap_pages(self.user_vm_start, self.page_cnt_max)
        pages = KERN_VM_SZ >> PAGE_SHIFT
        self.mm.mem.free_frames(self._clear_ptes(self.kern_vm, pages))
        self.mm.flush_tlb_kernel_range(self.kern_vm, self.kern_vm + KERN_VM_SZ)
        for pfn in (self.scratch_pfn, self.garbage_pfn):
            if pfn is not None:
                self.mm.mem.free_frame(pfn)
        self.scratch_pfn = self.garbage_pfn = None

    def handle_page_fault(self, addr: int) -> int | None:
        """The arena half of bpf_arena_handle_page_fault(): for an address in
        [kern_vm_start, kern_vm_start + 4 GiB + 32 KiB), try to install the scratch page
        over an all-zero PTE (a populated PTE is left alone) and flush nothing. Returns the
        page-aligned offset from kern_vm_start, or None outside that range (the lower
        half-guard included): then the fault oopses."""
        page_addr = addr & PAGE_MASK
        if self.scratch_pfn is None or not self.in_recovery_range(page_addr):
            return None
        self.mm.pgtables.ptep_try_set(page_addr, self.scratch_pte)
        return page_addr - self.kern_vm_start

    def in_recovery_range(self, addr: int) -> bool:
        """[kern_vm_start, kern_vm_start + 4 GiB + 32 KiB): where a fault may get the scratch page."""
        return self.kern_vm_start <= addr < self.kern_vm_start + SZ_4G + GUARD_SZ // 2

    def zap_pages(self, uaddr: int, page_cnt: int) -> None:
        """zap_pages(): drop user space's mappings of the range (and their TLB entries)."""
        if self._clear_ptes(uaddr, page_cnt):
            self.mm.flush_tlb_kernel_range(uaddr, uaddr + (page_cnt << PAGE_SHIFT))

    # -- user space's view ----------------------------------------------------

    def arena_vm_fault(self, address: int) -> int:
        """arena_vm_fault(): a user access found no PTE. Map the kernel's page if there is one;
        else allocate a zeroed page into both views, unless BPF_F_SEGV_ON_FAULT.

        As in the kernel, range_tree_clear() succeeds on a page that is not free, so a user
        touch of a *reserved* page allocates it: only the mapping flag makes user faults fail.
        Returns the PFN now mapped at the page of `address`.
        """
        if not self.user_vm_start <= address < self.user_vm_end:
            raise SegmentationFault(address, "not inside the arena's mapping")
        upage = address & PAGE_MASK
        kaddr = self.kern_addr(upage)
        pte = self.mm.pgtables.get_pte(kaddr)
        if self.is_scratch(pte):
            raise SegmentationFault(address, "the kernel scratched this page (a kernel fault mapped the scratch "
                                             "page there); user space never sees it")
        if pte_present(pte) and not self.is_garbage(pte):  # map-always: the garbage page counts as none
            pfn = pte_pfn(pte)
        else:
            if self.flags & BPF_F_SEGV_ON_FAULT:
                raise SegmentationFault(address, "no page is allocated there and the arena has BPF_F_SEGV_ON_FAULT")
            self.rt.range_tree_clear(self.compute_pgoff(upage), 1)
            pfn = self.mm.mem.alloc_frame(FrameKind.ARENA)
            self.mm.pgtables.set_pte(kaddr, mk_pte(pfn, PAGE_KERNEL))
        self.mm.pgtables.set_pte(upage, mk_pte(pfn, PAGE_USER))
        return pfn

    def _user_pa(self, address: int) -> int:
        pte = self.mm.pgtables.get_pte(address & PAGE_MASK)
        pfn = pte_pfn(pte) if pte_present(pte) else self.arena_vm_fault(address)
        return (pfn << PAGE_SHIFT) | (address & (PAGE_SIZE - 1))

    def user_read(self, address: int, length: int) -> bytes:
        """Read as the process that mmap()ed the arena: an unmapped page goes through arena_vm_fault()."""
        out = bytearray()
        while len(out) < length:
            va = address + len(out)
            n = min(length - len(out), PAGE_SIZE - va % PAGE_SIZE)
            out += self.mm.mem.read(self._user_pa(va), n)
        return bytes(out)

    def user_write(self, address: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            va = address + pos
            n = min(len(data) - pos, PAGE_SIZE - va % PAGE_SIZE)
            self.mm.mem.write(self._user_pa(va), data[pos:pos + n])
            pos += n

    def user_read_u64(self, address: int) -> int:
        return int.from_bytes(self.user_read(address, 8), "little")

    def user_write_u64(self, address: int, value: int) -> None:
        self.user_write(address, (value & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little"))

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
                    flags: int = BPF_F_MMAPABLE, key_size: int = 0, value_size: int = 0,
                    policy: Policy | None = None) -> Arena:
    """arena_map_alloc(): the checks and error codes of map creation.

    `kern_vm` is the reserved vmalloc area (KERN_VM_SZ bytes, no PTEs). With
    map_extra 0 the kernel places the arena at the first mmap; the model does
    that mmap now, where arena_get_unmapped_area() would: the header example's
    address, moved up to a 4 GiB boundary if the arena would cross one.
    """
    if not 0 <= max_entries <= _U32 or not 0 <= map_extra < 1 << 64 or not 0 <= flags <= _U32:
        raise ArenaError(EINVAL, "max_entries and map_flags are u32, map_extra a u64 (union bpf_attr)")
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
    arena = Arena(mm, max_entries, flags, start, start + vm_range, kern_vm, policy=policy or Policy())
    arena.rt.range_tree_set(0, max_entries)
    if arena.policy.scratch:
        arena.scratch_pfn = mm.mem.alloc_frame(FrameKind.SCRATCH)  # zeroed, and never zeroed again
    elif arena.policy.name == MAP_ALWAYS:
        arena.garbage_pfn = mm.mem.alloc_frame(FrameKind.GARBAGE)
        full = array("Q", [arena._freed_pte()]) * PTRS_PER_TABLE
        for va, n in _table_runs(kern_vm, KERN_VM_SZ >> PAGE_SHIFT):  # every kernel PTE of the range
            mm.pgtables.set_ptes(va, full if n == PTRS_PER_TABLE else full[:n])
    return arena
