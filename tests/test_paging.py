"""Paging is really on: the emulated MMU walks our tables and caches like hardware."""

import pytest
from unicorn.x86_const import UC_X86_REG_CR0, UC_X86_REG_CR3, UC_X86_REG_CR4

from emu import Machine
from emu.errors import EmuError
from emu.mm.physmem import FrameKind
from emu.x86.pgtable import PAGE_KERNEL, mk_pte
from emu.x86.unicorn_quirks import EFER_MSR

TLB_STUBS = """
SYM_FUNC_START(read_u64)
    mov (%rdi), %rax
    ret
SYM_FUNC_START(write_u64)
    mov %rsi, (%rdi)
    ret
SYM_FUNC_START(invlpg_then_read)
    invlpg (%rdi)
    mov (%rdi), %rax
    ret
SYM_FUNC_START(reload_cr3_then_read)
    mov %cr3, %rax
    mov %rax, %cr3
    mov (%rdi), %rax
    ret
"""


def two_frames(m, va):
    """`va` mapped to a frame holding 0x1111; a second frame holding 0x2222, not mapped."""
    old = m.pgtables.translate(va) >> 12
    new = m.mem.alloc_frame(FrameKind.DATA)
    m.write_u64(va, 0x1111)
    m.mem.write_u64(new << 12, 0x2222)
    return old, new


def test_control_registers_say_long_mode_with_paging(machine):
    uc = machine.cpus[0].uc
    assert uc.reg_read(UC_X86_REG_CR0) == 0x8005_0033  # PE MP ET NE WP AM PG
    assert uc.reg_read(UC_X86_REG_CR4) & (1 << 5)  # PAE
    assert uc.msr_read(EFER_MSR) & 0xD00 == 0xD00  # LME LMA NXE
    assert uc.reg_read(UC_X86_REG_CR3) == machine.pgtables.root


def test_a_changed_pte_is_invisible_until_invlpg(machine):
    machine.load_source(TLB_STUBS)
    va = machine.vmalloc(4096)
    _old, new = two_frames(machine, va)
    assert machine.call("read_u64", va).ret == 0x1111  # now cached in the CPU's TLB
    machine.set_pte(va, mk_pte(new, PAGE_KERNEL))
    assert machine.call("read_u64", va).ret == 0x1111  # stale translation still used
    assert machine.call("invlpg_then_read", va).ret == 0x2222


def test_a_store_through_an_entry_a_store_filled_uses_the_stale_translation(machine):
    machine.load_source(TLB_STUBS)
    va = machine.vmalloc(4096)
    old, new = two_frames(machine, va)
    machine.call("write_u64", va, 1)
    machine.set_pte(va, mk_pte(new, PAGE_KERNEL))
    machine.call("write_u64", va, 7)
    assert (machine.mem.read_u64(old << 12), machine.mem.read_u64(new << 12)) == (7, 0x2222)


def test_unicorn_walks_again_for_the_first_store_through_an_entry_a_load_filled(machine):
    """A Unicorn quirk (unicorn_quirks.py, its last paragraph): hardware would write to the old frame here,
    since the PTE's dirty bit was set when the load cached it. Races that need a stale
    store therefore make their first access a store."""
    machine.load_source(TLB_STUBS)
    va = machine.vmalloc(4096)
    old, new = two_frames(machine, va)
    assert machine.pte(va) & 0x40  # D: no walk is needed to set it
    machine.call("read_u64", va)
    machine.set_pte(va, mk_pte(new, PAGE_KERNEL))
    machine.call("write_u64", va, 7)
    assert (machine.mem.read_u64(old << 12), machine.mem.read_u64(new << 12)) == (0x1111, 7)


def test_invlpg_from_the_api_flushes_one_page_only(machine):
    machine.load_source(TLB_STUBS)
    a, b = machine.vmalloc(4096), machine.vmalloc(4096)
    _, new_a = two_frames(machine, a)
    _, new_b = two_frames(machine, b)
    assert machine.call("read_u64", a).ret == machine.call("read_u64", b).ret == 0x1111
    machine.set_pte(a, mk_pte(new_a, PAGE_KERNEL))
    machine.set_pte(b, mk_pte(new_b, PAGE_KERNEL))
    machine.invlpg(a)
    assert machine.call("read_u64", a).ret == 0x2222
    assert machine.call("read_u64", b).ret == 0x1111  # b's entry survived


def test_a_cr3_reload_flushes_the_tlb(machine):
    machine.load_source(TLB_STUBS)
    va = machine.vmalloc(4096)
    _, new = two_frames(machine, va)
    machine.call("read_u64", va)
    machine.set_pte(va, mk_pte(new, PAGE_KERNEL))
    assert machine.call("reload_cr3_then_read", va).ret == 0x2222


def test_an_unmapped_page_faults_even_after_it_was_cached_as_absent(machine):
    """Unicorn never caches not-present results: mapping a page needs no flush."""
    machine.load_source(TLB_STUBS)
    va = 0xFFFF_C900_3000_0000
    assert machine.call("read_u64", va).status == "oops"
    machine.map(va)
    machine.write_u64(va, 7)
    assert machine.call("read_u64", va).ret == 7


def test_mapping_over_a_mapped_page_changes_nothing(machine):
    va = machine.vmalloc(4096)
    before = machine.mem.frames_in_use()
    with pytest.raises(EmuError, match=f"{va:#x} is already mapped"):
        machine.map(va - 4096, 3 * 4096)
    assert machine.pte(va - 4096) == 0 and machine.mem.frames_in_use() == before


def test_a_closed_machine_says_so_instead_of_crashing_in_unicorn():
    with Machine() as m:
        m.load_source(TLB_STUBS)
        va = m.vmalloc(4096)
        m.write_u64(va, 5)
        assert m.call("read_u64", va).ret == 5
    with pytest.raises(EmuError, match="this machine was closed"):
        m.call("read_u64", va)
