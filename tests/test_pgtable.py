"""Page tables: real x86-64 entries, walked without a CPU."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emu.errors import EmuError
from emu.mm.physmem import FrameKind, PhysMem
from emu.x86.pgtable import (
    PAGE_KERNEL,
    PAGE_KERNEL_ROX,
    PAGE_USER,
    PageTables,
    flag_names,
    mk_pte,
    translate,
    walk,
)

VA = 0xFFFF_C900_0020_3000


class DictMemory:
    """The walker's two-method memory interface, over a dict: no guest RAM at all."""

    def __init__(self, words):
        self.words = words

    def read_u64(self, pa):
        return self.words.get(pa, 0)

    def contains(self, pa, length=1):
        return 0 <= pa < 1 << 20


def test_walk_reads_each_level_from_the_memory_it_is_given():
    # PGD index of VA is 402, PUD 0, PMD 1, PTE 3.
    mem = DictMemory({
        0x1000 + 402 * 8: 0x2067,
        0x2000 + 0 * 8: 0x3067,
        0x3000 + 1 * 8: 0x4067,
        0x4000 + 3 * 8: 0x8000_0000_0009_9063,
    })
    w = walk(mem, 0x1000, VA + 0x123)
    assert [s.level for s in w.stages] == ["PGD", "P4D", "PUD", "PMD", "PTE"]
    assert [s.index for s in w.stages] == [402, 402, 0, 1, 3]
    assert w.pa == 0x99123
    assert w.pte == 0x8000_0000_0009_9063
    assert w.dump_pagetable() == "PGD 2067 P4D 2067 PUD 3067 PMD 4067 PTE 8000000000099063"


# Entries whose tables lie in or just beyond DictMemory's 1 MiB, with P, RW, PSE and NX mixed.
ENTRY = st.builds(lambda pfn, flags: (pfn << 12) | flags, st.integers(0, 0x120),
                  st.sampled_from([0, 0x1, 0x3, 0x63, 0x83, 0xE3, 0x8000_0000_0000_0063]))


@given(st.lists(ENTRY, min_size=4, max_size=4), st.integers(0, (1 << 47) - 1), st.booleans())
def test_translate_agrees_with_the_recorded_walk(entries, low, kernel):
    va = (0xFFFF_8000_0000_0000 | low) if kernel else low
    words, table = {}, 0x1000
    for shift, entry in zip((39, 30, 21, 12), entries, strict=True):
        words[table + ((va >> shift) & 511) * 8] = entry
        table = entry & 0x000F_FFFF_FFFF_F000
    mem = DictMemory(words)
    assert translate(mem, 0x1000, va) == walk(mem, 0x1000, va).pa


def test_walk_stops_at_the_first_not_present_level_like_dump_pagetable():
    mem = DictMemory({0x1000 + 402 * 8: 0x2067})
    w = walk(mem, 0x1000, VA)
    assert w.pa is None
    assert w.stopped == "not-present PUD"
    assert w.dump_pagetable() == "PGD 2067 P4D 2067 PUD 0"
    assert w.pte == 0


def test_walk_of_a_non_canonical_address_has_no_stages():
    w = walk(DictMemory({}), 0x1000, 0xDEAD_0000_0000_0100)
    assert w.stages == () and w.stopped == "non-canonical address"


def test_walk_prints_one_stage_per_level_with_flags_by_name():
    mem = DictMemory({0x1000 + 402 * 8: 0x2067, 0x2000: 0x3067, 0x3000 + 8: 0x4067,
                      0x4000 + 24: mk_pte(0x99, PAGE_KERNEL)})
    text = str(walk(mem, 0x1000, VA))
    assert text.splitlines() == [
        "walk 0xffffc90000203000  CR3 = 0x1000",
        "  PGD[402] @ 0x1c90 = 0x0000000000002067  P RW US A D",
        "  P4D[402] @ 0x1c90 = 0x0000000000002067  P RW US A D",
        "  PUD[  0] @ 0x2000 = 0x0000000000003067  P RW US A D",
        "  PMD[  1] @ 0x3008 = 0x0000000000004067  P RW US A D",
        "  PTE[  3] @ 0x4018 = 0x8000000000099063  P RW A D NX",
        "  -> physical 0x99000",
    ]


def test_kernel_protections_have_the_kernels_bits():
    assert PAGE_KERNEL == 0x8000_0000_0000_0063
    assert PAGE_KERNEL_ROX == 0x21
    assert PAGE_USER == 0x8000_0000_0000_0067
    assert flag_names(PAGE_USER) == "P RW US A D NX"


def test_map_change_unmap_in_guest_memory():
    mem = PhysMem(1 << 20)
    pt = PageTables(mem)
    assert pt.translate(VA) is None
    pfn = mem.alloc_frame(FrameKind.DATA)
    pt.map(VA, pfn)
    assert pt.get_pte(VA) == mk_pte(pfn, PAGE_KERNEL)
    assert pt.translate(VA + 0x10) == (pfn << 12) + 0x10
    assert pt.set_pte(VA, mk_pte(pfn, PAGE_KERNEL_ROX)) == mk_pte(pfn, PAGE_KERNEL)
    assert pt.walk(VA).leaf.entry == mk_pte(pfn, PAGE_KERNEL_ROX)
    assert pt.unmap(VA) == mk_pte(pfn, PAGE_KERNEL_ROX)
    assert pt.get_pte(VA) == 0 and pt.translate(VA) is None


def test_ptep_try_set_installs_only_over_an_all_zero_pte():
    mem = PhysMem(1 << 20)
    pt = PageTables(mem)
    assert pt.ptep_try_set(VA, mk_pte(5, PAGE_KERNEL))
    assert not pt.ptep_try_set(VA, mk_pte(6, PAGE_KERNEL))
    assert pt.get_pte(VA) == mk_pte(5, PAGE_KERNEL)
    pt.set_pte(VA, 0x2)  # not present, but not zero: still occupied for a strict cmpxchg
    assert not pt.ptep_try_set(VA, mk_pte(6, PAGE_KERNEL))


def test_a_sparse_4gib_range_costs_tables_only_where_mapped():
    mem = PhysMem(8 << 20)
    pt = PageTables(mem)
    base = 0xFFFF_C900_4000_0000
    before = mem.frames_in_use()
    for i in range(0, 4 << 30, 1 << 30):  # one page in each GiB of a 4 GiB range
        pt.map(base + i, mem.alloc_frame(FrameKind.ARENA))
    tables = mem.frames_in_use() - before - 4
    assert tables == 1 + 4 + 4  # one PUD page, then a PMD and a PTE page per GiB


def test_unaligned_map_and_large_page_operations_are_errors():
    pt = PageTables(PhysMem(1 << 20))
    with pytest.raises(EmuError, match="unaligned"):
        pt.map(VA + 1, 1)
    with pytest.raises(EmuError, match="non-canonical"):
        pt.pte_slot(0xDEAD_0000_0000_0000)
