"""Freeing arena pages by runs of frames: the same frames freed as page by page, faster."""

from array import array

import pytest

from emu.bpf.arena import _frame_runs
from emu.errors import EmuError
from emu.mm.layout import PAGE_SIZE
from emu.mm.physmem import FrameKind, PhysMem
from emu.x86.pgtable import PAGE_KERNEL, PAGE_KERNEL_RO, mk_pte, pte_pfn

ACCESSED, DIRTY = 0x20, 0x40


def ptes(*pfns_and_flags: tuple[int, int]) -> array:
    return array("Q", [mk_pte(pfn, flags) if pfn else 0 for pfn, flags in pfns_and_flags])


def test_consecutive_frames_with_one_set_of_flags_are_one_run():
    table = ptes(*[(0x1234 + i, PAGE_KERNEL) for i in range(512)])
    assert _frame_runs(table) == [range(0x1234, 0x1234 + 512)]
    table[7] |= ACCESSED | DIRTY  # what the CPU sets in a page it wrote: still the run
    table[0] |= ACCESSED
    assert _frame_runs(table) == [range(0x1234, 0x1234 + 512)]


@pytest.mark.parametrize(("table", "runs"), [
    (ptes((5, PAGE_KERNEL), (0, 0), (7, PAGE_KERNEL)), [range(5, 6), range(7, 8)]),  # a hole
    (ptes((0, 0), (6, PAGE_KERNEL), (7, PAGE_KERNEL)), [range(6, 7), range(7, 8)]),  # none first
    (ptes((5, PAGE_KERNEL), (6, PAGE_KERNEL_RO), (7, PAGE_KERNEL)), [range(5, 6), range(6, 7), range(7, 8)]),
    (ptes((7, PAGE_KERNEL), (6, PAGE_KERNEL)), [range(7, 8), range(6, 7)]),  # reused frames come back reversed
    (ptes((9, PAGE_KERNEL), (9, PAGE_KERNEL)), [range(9, 10), range(9, 10)]),  # one page mapped twice
    (ptes((0, 0), (0, 0)), []),
])
def test_anything_else_is_a_run_per_present_pte(table, runs):
    assert _frame_runs(table) == runs


def test_runs_free_their_frames_and_a_bad_run_is_named_and_not_freed():
    mem = PhysMem(1 << 20)
    pfns = mem.alloc_frames(FrameKind.ARENA, 8)
    assert pfns == list(range(1, 9))
    mem.free_frame_runs([range(1, 4), range(6, 7)])
    assert [mem.kind(p) for p in pfns] == [FrameKind.FREE] * 3 + [FrameKind.ARENA] * 2 + [FrameKind.FREE] + \
        [FrameKind.ARENA] * 2
    assert mem.frames_in_use() == 4
    with pytest.raises(EmuError, match="freeing frame 0x6 that is not allocated"):
        mem.free_frame_runs([range(4, 8)])
    assert [mem.kind(p) for p in (4, 5, 7)] == [FrameKind.ARENA] * 3
    with pytest.raises(EmuError, match="freeing frame 0x100 that is not allocated"):
        mem.free_frame_runs([range(0x100, 0x101)])  # beyond RAM


@pytest.mark.arena(max_entries=1024)
def test_a_free_after_the_cpu_wrote_the_pages_releases_every_frame(machine, arena):
    """The written pages' PTEs carry the accessed and dirty bits the CPU set: still freed, and
    the scratch page a fault put in the range stays the arena's."""
    p = arena.alloc_pages(0, 600)
    assert p
    kaddr = arena.kern_addr(p)
    machine.load_source("SYM_FUNC_START(w)\n movq $1, (%rdi)\n ret\n")
    assert machine.call("w", kaddr + 3 * PAGE_SIZE).status == "returned"
    assert arena.handle_page_fault(kaddr + 700 * PAGE_SIZE) == kaddr - arena.kern_vm_start + 700 * PAGE_SIZE
    assert machine.pte(kaddr + 3 * PAGE_SIZE) & (ACCESSED | DIRTY) == ACCESSED | DIRTY
    frames = [pte_pfn(machine.pte(kaddr + i * PAGE_SIZE)) for i in range(600)]
    scratch = pte_pfn(machine.pte(kaddr + 700 * PAGE_SIZE))
    assert scratch == arena.scratch_pfn
    arena.free_pages(p, 701)
    assert {machine.mem.kind(f) for f in frames} == {FrameKind.FREE}
    assert machine.mem.kind(scratch) == FrameKind.SCRATCH
    assert machine.pte(kaddr + 3 * PAGE_SIZE) == machine.pte(kaddr + 700 * PAGE_SIZE) == 0
