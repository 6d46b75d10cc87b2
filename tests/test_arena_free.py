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


def test_reused_frames_come_back_downwards_and_are_one_run_too():
    table = ptes(*[(0x2000 - i, PAGE_KERNEL) for i in range(512)])
    table[3] |= DIRTY
    assert _frame_runs(table) == [range(0x2000 - 511, 0x2001)]


@pytest.mark.parametrize(("table", "frames"), [
    (ptes((5, PAGE_KERNEL), (0, 0), (7, PAGE_KERNEL)), [[5, 7]]),  # a hole
    (ptes((0, 0), (6, PAGE_KERNEL), (7, PAGE_KERNEL)), [[6, 7]]),  # none first
    (ptes((5, PAGE_KERNEL), (6, PAGE_KERNEL_RO), (7, PAGE_KERNEL)), [[5, 6, 7]]),  # flags differ
    (ptes((7, PAGE_KERNEL), (9, PAGE_KERNEL), (8, PAGE_KERNEL)), [[7, 9, 8]]),
    (ptes((9, PAGE_KERNEL), (9, PAGE_KERNEL)), [[9, 9]]),  # one page mapped twice
    (ptes((0, 0), (0, 0)), []),
])
def test_any_other_table_is_a_list_of_its_present_frames(table, frames):
    assert _frame_runs(table) == frames


def test_groups_free_their_frames_and_a_bad_group_is_named_and_not_freed():
    mem = PhysMem(1 << 20)
    pfns = mem.alloc_frames(FrameKind.ARENA, 12)
    assert pfns == list(range(1, 13))
    mem.free_frames([range(1, 4), [6], [10, 9]])
    free, arena = FrameKind.FREE, FrameKind.ARENA
    assert [mem.kind(p) for p in pfns] == [free] * 3 + [arena] * 2 + [free] + [arena] * 2 + [free] * 2 + [arena] * 2
    assert mem.frames_in_use() == 6
    for group, bad in (([4, 5, 6], 6), (range(4, 8), 6), ([7, 8, 7], 7), (range(0x100, 0x101), 0x100), ([11, 0], 0)):
        with pytest.raises(EmuError, match=f"^freeing frame {bad:#x} that is not allocated$"):
            mem.free_frames([group])
    assert [mem.kind(p) for p in (4, 5, 7, 8, 11, 12)] == [arena] * 6
    mem.free_frames([[12, 11], range(7, 9)])
    assert mem.frames_in_use() == 2


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
