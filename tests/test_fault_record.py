"""The lazy fault record: a fault keeps plain facts and makes its story, walks and report text
when they are read. What is read later must be what was true at fault time."""

from hypothesis import given, settings
from hypothesis import strategies as st

from emu import Machine
from emu.bpf.stream import BPF_STDERR
from emu.corpus import bpf_prog
from emu.kernel.events import FaultEvent, fault_taken, render_step
from emu.mm.physmem import PhysMem, _Words
from emu.x86.fault import Decision, undecided
from emu.x86.pgtable import (
    _PAGE_PSE,
    PAGE_KERNEL,
    PageTables,
    capture_walk,
    captured_pa,
    replay_walk,
    translate,
    walk,
)
from emu.x86.traps import ErrorCode, error_code

UVM = 0x7F7D_2620_0000


def test_a_step_is_formatted_when_read_and_its_tuple_arguments_are_steps_too():
    assert render_step("as it is") == "as it is"
    assert render_step(("at {:#x}: {}", 0x10, ("{} of {}", "one", 2))) == "at 0x10: one of 2"
    assert render_step((lambda a, b: f"{a}/{b}", "x", 3)) == "x/3"


def test_the_fast_constructors_make_what_the_dataclasses_make():
    code = ErrorCode(2)
    made = FaultEvent(seq=3, cpu=1, vector=14, rip=0x10, where="f+0x0/0x1", address=0x2000, error_code=code,
                      user_mode=False, walk_before=None, started=5, rcx=6, string_op=True, insn="nop",
                      source="a.c:1", bpf_insn="7: r0 = 0")
    fast = fault_taken(3, 1, 14, 0x10, "f+0x0/0x1", 0x2000, code, None, 5, 6, True, "nop", "a.c:1", "7: r0 = 0")
    assert fast.__dict__ == made.__dict__ and fast == made
    assert undecided().__dict__ == Decision(resolution="", action="").__dict__
    assert error_code(2) is error_code(2) and error_code(2) == code


def tables() -> tuple[PhysMem, PageTables]:
    mem = PhysMem(1 << 22)
    pt = PageTables(mem)
    for i in range(4):
        pt.map(0xFFFF_C900_0000_0000 + i * 0x1000, 0x100 + i, PAGE_KERNEL)
    pt.map(0x40_0000, 0x200, PAGE_KERNEL)
    # beside it a 2 MiB page, and a PMD entry naming a table beyond guest RAM
    pmd_table = walk(mem, pt.root, 0x40_0000).stages[2].entry & ~0xFFF
    mem.write_u64(pmd_table + 8 * 3, 0x60_0000 | PAGE_KERNEL | _PAGE_PSE)
    mem.write_u64(pmd_table + 8 * 4, (1 << 40) | 0x67)
    assert walk(mem, pt.root, 0x80_0000).stopped == "PTE table 0x10000000000 outside guest RAM"
    # and at the PUD level: a 1 GiB page, and a PMD table beyond guest RAM
    pud_table = walk(mem, pt.root, 0x40_0000).stages[1].entry & ~0xFFF
    mem.write_u64(pud_table + 8 * 1, 0x4000_0000 | PAGE_KERNEL | _PAGE_PSE)
    mem.write_u64(pud_table + 8 * 2, (1 << 41) | 0x67)
    assert walk(mem, pt.root, 0x8000_0000).stopped == "PMD table 0x20000000000 outside guest RAM"
    return mem, pt


def test_guest_ram_as_words_reads_little_endian_u64s_on_any_host():
    mem = PhysMem(1 << 16)
    mem.write_u64(0x1238, 0x0102_0304_0506_0708)
    assert mem.words[0x1238 >> 3] == _Words(mem)[0x1238 >> 3] == 0x0102_0304_0506_0708 == mem.read_u64(0x1238)


VAS = st.one_of(
    st.integers(0, (1 << 64) - 1),
    st.sampled_from([0xFFFF_C900_0000_0000, 0xFFFF_C900_0000_3FF8, 0xFFFF_C900_0000_4000, 0x40_0123, 0x60_0000,
                     0x7F_FFF8, 0x80_0000, 0x8000_0000_0000, 0, 0x4000_1234, 0x8000_0000, 0x7FFF_FFF8]),
    st.integers(0x40_0000, 0xA0_0000))


@settings(max_examples=300, deadline=None)
@given(va=VAS)
def test_a_captured_walk_replays_as_the_walk_it_was(va):
    mem, pt = tables()
    captured = capture_walk(mem, pt.root, va)
    assert replay_walk(captured) == walk(mem, pt.root, va)
    assert captured_pa(captured) == translate(mem, pt.root, va) == pt.translate(va)


def test_the_walk_before_is_the_tables_at_fault_time_though_read_after_they_changed():
    m = Machine()
    m.load(bpf_prog("scratch.S"))
    r = m.call("arena_arg_unpopulated")
    [e] = r.faults
    kaddr = m.arena.kern_vm_start + 0x2620_1000
    assert m.arena.alloc_pages(UVM + 0x1000, 1) == UVM + 0x1000  # a real page replaces the scratch PTE
    assert m.pgtables.get_pte(kaddr) not in (0, m.arena.scratch_pte)
    assert (e.pte_before, e.pte_after) == (0, m.arena.scratch_pte)
    assert e.walk_before.stopped == "not-present PTE" and e.walk_after.pte == m.arena.scratch_pte
    assert "  PTE before: 0 (none)\n" in e.story()


def test_the_stream_text_and_its_length_are_what_was_committed_though_read_after_the_stream_was():
    m = Machine()
    m.load(bpf_prog("scratch.S"))
    r = m.call("touch_pages", 3)
    prog = m.progs.by_name["touch_pages"]
    read = prog.stream_read(BPF_STDERR).decode()  # consumed before any event is looked at
    texts = [e.stream for e in r.faults]
    assert "".join(texts) == read and len(set(texts)) == 3
    first = (f"ERROR: Arena READ access at unmapped address {UVM + 0x1000:#x}\n"
             "CPU: 0 UID: 0 PID: 1 Comm: arena-emu\n"
             "Call trace:\n")
    assert texts[0].startswith(first)
    assert [e.steps[-1] for e in r.faults] == [
        f"bpf_stream_stage: reported to touch_pages's stderr ({len(t)} bytes)" for t in texts]
    assert prog.stream_read(BPF_STDERR) == b""
