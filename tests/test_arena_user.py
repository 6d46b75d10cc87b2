"""User space's view of the arena: its mapping at user_vm_start and arena_vm_fault()."""

import pytest

from emu import Machine
from emu.bpf.arena import BPF_F_MMAPABLE, BPF_F_SEGV_ON_FAULT, SegmentationFault
from emu.corpus import bpf_prog
from emu.mm.layout import PAGE_SIZE
from emu.x86.pgtable import PAGE_USER, pte_pfn


@pytest.fixture
def m() -> Machine:
    m = Machine()
    m.load(bpf_prog("arena_list.S"))
    return m


def test_a_user_touch_allocates_a_zeroed_page_into_both_views(m):
    a = m.arena
    u = a.user_vm_start + 3 * PAGE_SIZE
    assert a.user_read(u + 5, 3) == bytes(3)
    kpte, upte = m.pte(a.kern_addr(u)), m.pte(u)
    assert pte_pfn(kpte) == pte_pfn(upte) and upte & 0xFFF == PAGE_USER & 0xFFF and upte >> 63
    assert a.rt.runs() == [(0, 3), (4, 16)]
    a.user_write_u64(u + 8, 0x55)
    assert m.read_u64(a.kern_addr(u) + 8) == 0x55


def test_user_space_builds_a_list_that_bpf_walks(m):
    """arena_list.c: user space and the program share the pages."""
    a = m.arena
    base = a.user_vm_start + 2 * PAGE_SIZE
    for i in range(4):
        a.user_write_u64(base + 16 * i, base + 16 * (i + 1) if i < 3 else 0)
        a.user_write_u64(base + 16 * i + 8, 100 * (i + 1))
    r = m.call("arena_list_sum", base)
    assert (r.ret, r.faults) == (1000, [])


def test_bpf_writes_are_seen_by_user_space(m):
    head = m.call("arena_list_build", 2).ret
    a = m.arena
    assert [a.user_read_u64(head + off) for off in (0, 8, 16, 24)] == [head + 16, 1, 0, 2]


def test_a_freed_page_is_zapped_from_user_space_and_comes_back_fresh(m):
    a = m.arena
    p = a.alloc_pages(0, 1)
    a.user_write_u64(p, 9)
    a.free_pages(p, 1)
    assert m.pte(p) == 0 and m.pte(a.kern_addr(p)) == 0
    assert a.user_read_u64(p) == 0  # a new zeroed page, allocated by the fault
    assert a.rt.runs() == [(1, 16)]


def test_segv_on_fault_refuses_unallocated_pages_but_maps_allocated_ones():
    m = Machine()
    a = m.create_arena(4, flags=BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT)
    with pytest.raises(SegmentationFault) as e:
        a.user_read(a.user_vm_start + 10, 1)
    assert str(e.value) == (f"SIGSEGV at {a.user_vm_start + 10:#x}: no page is allocated there and the arena "
                            "has BPF_F_SEGV_ON_FAULT")
    assert m.pte(a.user_vm_start) == 0 and a.rt.runs() == [(0, 4)]
    p = a.alloc_pages(0, 1)
    a.user_write_u64(p, 1)
    assert m.read_u64(a.kern_addr(p)) == 1


def test_an_access_outside_the_mapping_is_sigsegv(m):
    a = m.arena
    with pytest.raises(SegmentationFault, match="not inside the arena's mapping"):
        a.user_read(a.user_vm_end, 1)


def test_a_user_touch_of_a_reserved_page_allocates_it_as_the_kernel_does(m):
    """arena_vm_fault() calls range_tree_clear(), which succeeds on a range that is not free:
    the reservation does not stop a user fault (only BPF_F_SEGV_ON_FAULT does)."""
    a = m.arena
    r = a.user_vm_start + PAGE_SIZE
    assert a.reserve_pages(r, 1) == 0
    a.user_write_u64(r, 3)
    assert m.read_u64(a.kern_addr(r)) == 3
    assert a.alloc_pages(r, 1) == 0  # still taken
