"""The arena model against kernel/bpf/arena.c: creation, alloc, free, reserve."""

import pytest

from emu import Machine
from emu.bpf.arena import (
    BPF_F_MMAPABLE,
    BPF_F_NO_USER_CONV,
    BPF_F_SEGV_ON_FAULT,
    E2BIG,
    EBUSY,
    EINVAL,
    ERANGE,
    GUARD_SZ,
    ArenaError,
)
from emu.errors import AsmError
from emu.mm.layout import PAGE_SIZE
from emu.mm.physmem import FrameKind
from emu.x86.pgtable import PAGE_KERNEL, pte_pfn

TOP = 0x1_0000_0000 - 2 * PAGE_SIZE  # verifier_arena.c: a 2-page arena at the top of a 4 GiB window


@pytest.fixture
def arena(machine):
    return machine.create_arena(2, TOP)


@pytest.mark.parametrize(("kwargs", "errno"), [
    ({"max_entries": 0}, EINVAL),
    ({"max_entries": 1, "flags": 0}, EINVAL),
    ({"max_entries": 1, "flags": BPF_F_MMAPABLE | 1}, EINVAL),
    ({"max_entries": 1, "map_extra": 0x1000_0123}, EINVAL),
    ({"max_entries": (1 << 20) + 1}, E2BIG),
    ({"max_entries": 3, "map_extra": TOP}, ERANGE),
])
def test_creation_checks_and_error_codes(machine, kwargs, errno):
    with pytest.raises(ArenaError) as e:
        machine.create_arena(**kwargs)
    assert e.value.errno == errno


def test_creation_accepts_the_arena_flags_and_a_full_4gib(machine):
    a = machine.create_arena(1 << 20, flags=BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT | BPF_F_NO_USER_CONV)
    assert a.user_vm_start == 0x7F7E_0000_0000  # 0x7f7d26200000 would cross 4 GiB: rounded up
    assert a.user_vm_end - a.user_vm_start == 1 << 32


def test_kernel_range_has_the_half_guard_and_the_links_symbols(machine, arena):
    assert arena.kern_vm_start == arena.kern_vm + GUARD_SZ // 2 == arena.kern_vm + 0x8000
    assert machine.link_symbols["ARENA_KERN_VM_START"] == arena.kern_vm_start
    assert machine.link_symbols["ARENA_USER_VM_START"] == TOP
    assert arena.kern_addr(0x7F7D_2620_0123) == arena.kern_vm_start + 0x2620_0123


def test_basic_alloc1_third_alloc_fails_and_a_freed_page_is_reused(machine, arena):
    p1, p2 = arena.alloc_pages(0, 1), arena.alloc_pages(0, 1)
    assert (p1, p2) == (TOP, TOP + PAGE_SIZE)
    assert arena.alloc_pages(0, 1) == 0
    arena.free_pages(p1, 1)
    assert arena.alloc_pages(0, 1) == p1


def test_allocated_pages_are_zeroed_arena_frames_mapped_page_kernel(machine, arena):
    p = arena.alloc_pages(0, 2)
    k = arena.kern_addr(p)
    for page in (k, k + PAGE_SIZE):
        pte = machine.pte(page)
        assert pte & ~0x000F_FFFF_FFFF_F000 == PAGE_KERNEL
        assert machine.mem.kind(pte_pfn(pte)) == FrameKind.ARENA
    assert machine.read(k, 2 * PAGE_SIZE) == bytes(2 * PAGE_SIZE)


@pytest.mark.parametrize(("args", "why"), [
    ((0, 1, -1, 1), "flags"),
    ((0, 0), "page_cnt 0"),
    ((0, 3), "more than the arena"),
    ((TOP + 8, 1), "misaligned"),
    ((TOP + 2 * PAGE_SIZE, 1), "past the end of the VMA"),
    ((TOP + PAGE_SIZE, 2), "runs past the end"),
    ((0, 1, 1), "no such NUMA node"),
])
def test_alloc_returns_null_for_every_error(arena, args, why):
    assert arena.alloc_pages(*args) == 0, why
    assert arena.rt.runs() == [(0, 2)]


def test_alloc_at_an_address_fails_when_taken_or_reserved(arena):
    assert arena.alloc_pages(TOP, 1) == TOP
    assert arena.alloc_pages(TOP, 1) == 0
    assert arena.reserve_pages(TOP + PAGE_SIZE, 1) == 0
    assert arena.alloc_pages(TOP + PAGE_SIZE, 1) == 0
    assert arena.alloc_pages(0, 1) == 0  # basic_reserve2: not implicitly either


def test_free_uses_the_low_32_bits_rounded_down_and_clamps(machine, arena):
    p = arena.alloc_pages(0, 2)
    arena.free_pages(0xDEAD_0000_0000_0000 | ((p + PAGE_SIZE + 123) & 0xFFFF_FFFF), 5)  # frees the 2nd page only
    assert machine.pte(arena.kern_addr(p)) != 0
    assert machine.pte(arena.kern_addr(p) + PAGE_SIZE) == 0
    assert arena.rt.runs() == [(1, 2)]


def test_free_of_null_or_zero_pages_does_nothing(arena):
    p = arena.alloc_pages(0, 1)
    arena.free_pages(0, 1)
    arena.free_pages(p, 0)
    assert arena.rt.runs() == [(1, 2)]


def test_one_free_covers_allocated_and_reserved_pages(arena):
    assert arena.alloc_pages(TOP, 1) == TOP
    assert arena.reserve_pages(TOP + PAGE_SIZE, 1) == 0
    arena.free_pages(TOP, 2)
    assert arena.rt.runs() == [(0, 2)]


@pytest.mark.parametrize(("ptr", "cnt", "ret"), [
    (TOP, 0, 0),
    (TOP + 3, 1, 0),  # misaligned: "succeeds", reserves nothing
    (TOP + PAGE_SIZE, 2, -EINVAL),
    (0, 1, -EINVAL),  # NULL is not special: pgoff (u32)(0 - low32(user_vm_start))
    (TOP, 1, 0),
])
def test_reserve_return_codes(arena, ptr, cnt, ret):
    assert arena.reserve_pages(ptr, cnt) == ret


def test_reserving_twice_is_ebusy(arena):
    assert arena.reserve_pages(TOP, 1) == 0
    assert arena.reserve_pages(TOP, 1) == -EBUSY


def test_free_flushes_the_tlb_so_a_cached_translation_dies(machine, arena):
    machine.load_source("SYM_FUNC_START(rd)\n mov (%rdi), %rax\n ret\n")
    p = arena.alloc_pages(0, 1)
    k = arena.kern_addr(p)
    machine.write_u64(k, 42)
    assert machine.call("rd", k).ret == 42  # cached now
    arena.free_pages(p, 1)
    result = machine.call("rd", k)
    assert result.status == "oops" and result.faults[0].pte_before == 0


def test_freed_frames_go_back_to_the_allocator(machine, arena):
    p = arena.alloc_pages(0, 2)
    in_use = machine.mem.frames_in_use()
    frames = [pte_pfn(machine.pte(arena.kern_addr(p) + i * PAGE_SIZE)) for i in range(2)]
    arena.free_pages(p, 2)
    assert machine.mem.frames_in_use() == in_use - 2  # the two pages; page tables stay
    assert [machine.mem.kind(f) for f in frames] == [FrameKind.FREE, FrameKind.FREE]
    assert all(machine.pte(arena.kern_addr(p) + i * PAGE_SIZE) == 0 for i in range(2))


def test_all_4gib_of_pages_allocate_in_one_call_and_free_again():
    """basic_alloc3 at the largest size: 1,048,576 pages, PTEs installed a table at a time."""
    m = Machine(ram=(4 << 30) + (32 << 20))
    a = m.create_arena(1 << 20, 1 << 32)
    before, tables_before = m.mem.frames_in_use(), m.mem.frames_of(FrameKind.PGTABLE)
    assert a.alloc_pages(0, 1 << 20) == 1 << 32
    assert a.rt.runs() == []
    assert a.alloc_pages(0, 1) == 0
    tables = m.mem.frames_of(FrameKind.PGTABLE) - tables_before
    assert 2048 <= tables <= 2049 + 5  # a PTE table per 2 MiB, a PMD table per 1 GiB, on demand
    assert m.mem.frames_of(FrameKind.ARENA) == 1 << 20
    assert m.mem.frames_in_use() - before == (1 << 20) + tables
    for pgoff in (0, 511, 512, (1 << 20) - 1):
        pte = m.pte(a.kern_vm_start + pgoff * PAGE_SIZE)
        assert pte & ~0x000F_FFFF_FFFF_F000 == PAGE_KERNEL and m.mem.kind(pte_pfn(pte)) == FrameKind.ARENA
    m.write_u64(a.kern_vm_start + (1 << 32) - 8, 7)
    assert a.user_read_u64((1 << 33) - 8) == 7
    a.free_pages(1 << 32, 1 << 20)
    assert a.rt.runs() == [(0, 1 << 20)]
    assert m.mem.frames_of(FrameKind.ARENA) == 0
    assert m.mem.frames_in_use() - before == m.mem.frames_of(FrameKind.PGTABLE) - tables_before  # tables stay
    assert m.pte(a.kern_vm_start) == m.pte(a.kern_vm_start + (1 << 32) - PAGE_SIZE) == 0


def test_a_partial_install_gives_the_tail_back_and_frees_the_head(machine, arena):
    machine.set_pte(arena.kern_addr(TOP) + PAGE_SIZE, 0x1063)  # something already mapped at page 1
    assert arena.alloc_pages(0, 2) == 0  # apply_range_set_cb(): -EBUSY
    assert arena.rt.runs() == [(0, 2)]
    assert machine.pte(arena.kern_addr(TOP)) == 0


def test_best_fit_allocates_sequentially_then_fills_the_newest_smallest_gap(machine):
    """big_alloc2's order, through alloc_pages(): range_tree_find() is best fit, and of two gaps of
    one size the one freed last comes first (the size tree puts an equal size to the right, and
    the search keeps the last run that fits)."""
    a = machine.create_arena(10, 1 << 32)
    pages = [a.alloc_pages(0, 1) for _ in range(5)]
    assert pages == [(1 << 32) + i * PAGE_SIZE for i in range(5)]
    a.free_pages(pages[1], 1)
    a.free_pages(pages[3], 1)
    assert a.alloc_pages(0, 2) == (1 << 32) + 5 * PAGE_SIZE  # neither 1-page gap fits
    assert a.alloc_pages(0, 1) == pages[3]
    assert a.alloc_pages(0, 1) == pages[1]
    assert a.rt.runs() == [(7, 10)]


def test_a_one_page_allocation_takes_the_smallest_gap_not_the_lowest(machine):
    """The kernel-facts example: 10 pages allocated, pages 0-2 and 7 freed: page 7, not page 0."""
    a = machine.create_arena(16, 1 << 32)
    base = a.alloc_pages(0, 10)
    a.free_pages(base, 3)
    a.free_pages(base + 7 * PAGE_SIZE, 1)
    assert a.alloc_pages(0, 1) == base + 7 * PAGE_SIZE
    assert a.alloc_pages(0, 3) == base  # the 3-page gap, before the 6 pages left at the top


@pytest.mark.parametrize("decl", ["BPF_ARENA(arena, -1)", "BPF_ARENA(arena, 1 << 32)", "BPF_ARENA(arena, 4, -4096)"])
def test_arena_attributes_out_of_their_c_types_are_refused(machine, decl):
    with pytest.raises(AsmError, match=r"<inline>:1: error: BPF_ARENA: arena_map_alloc\(\) failed: -EINVAL: "
                                       r"max_entries and map_flags are u32, map_extra a u64 \(union bpf_attr\)"):
        machine.load_source(decl + "\n")
