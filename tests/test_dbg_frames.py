"""bt and finish where a frame is not set up yet, or no longer: the unwinder reads the
frame's state from the instruction at RIP, as the kernel's does from a stop's registers."""

import pytest

from emu.x86.unwind import ENTRY, FRAMED, PUSHED, RETURNING, frame_state
from emu.x86.unwind_orc import OrcTable, unwind_frames

PROG_CALL_RET = 0xFFFF_FFFF_8100_00E7  # arena_arg_unpopulated+0x47, after its call of the kfunc
KFUNC = 0xFFFF_FFFF_8100_0000  # bpf_kfunc_arena_read_u64


@pytest.mark.parametrize(("insn", "at_entry", "state"), [
    ("pushq %rbp", True, ENTRY), ("endbr64", True, ENTRY), ("pushq %rbp", False, ENTRY),
    ("movq %rsp, %rbp", False, PUSHED), ("retq", False, RETURNING), ("repz retq", False, RETURNING),
    ("retq $8", False, RETURNING), ("popq %rbp", False, FRAMED), ("repz cmpsb (%rdi), (%rsi)", False, FRAMED),
    (None, False, FRAMED)])
def test_the_frame_state_comes_from_the_instruction_at_rip(insn, at_entry, state):
    assert frame_state(insn, at_entry) == state


def test_unwind_takes_the_return_address_from_the_stack_until_rbp_is_the_frame():
    stack = {0x1000: 0x2000, 0x1008: 0xAAA, 0x1010: 0xBBB, 0x2000: 0, 0x2008: 0xCCC}
    read, none = stack.get, OrcTable()
    assert unwind_frames(none, read, 0x10, 0x1010, 0x2000, 0, 0x3000, ENTRY) == [0x10, 0xBBB, 0xCCC]
    assert unwind_frames(none, read, 0x10, 0x1010, 0x2000, 0, 0x3000, RETURNING) == [0x10, 0xBBB, 0xCCC]
    assert unwind_frames(none, read, 0x10, 0x1000, 0x2000, 0, 0x3000, PUSHED) == [0x10, 0xAAA, 0xCCC]
    assert unwind_frames(none, read, 0x10, 0x0FF0, 0x1000, 0, 0x3000, FRAMED) == [0x10, 0xAAA, 0xCCC]


def test_bt_at_plus_1_shows_the_programs_caller(d):
    d.execute("si")  # past push %rbp, before mov %rsp,%rbp
    assert d.execute("bt").splitlines() == [
        "#0  0xffffffff810000a1 in bpf_prog_c2f59eb016873e5a_arena_arg_unpopulated+0x1/0x50 () at scratch.S:29",
        "#1  0xffffffff80fff100 in emu_call_return+0x0/0x10 ()"]


@pytest.mark.parametrize("off", [0, 1, 8])  # the entry, after push %rbp, the ret
def test_bt_in_a_kfunc_whose_frame_is_not_set_up_shows_the_program(d, off):
    d.execute(f"break *{KFUNC + off:#x}")
    d.execute("c")
    prog = d.m.progs.by_name["arena_arg_unpopulated"]
    assert d.execute("bt").splitlines()[1:] == [
        f"#1  {PROG_CALL_RET:#018x} in {prog.ksym}+0x47/0x50 () at scratch.S:43",
        "#2  0xffffffff80fff100 in emu_call_return+0x0/0x10 ()"]


@pytest.mark.parametrize("off", [1, 8])
def test_finish_before_the_frame_is_set_up_or_at_ret_stops_in_the_caller(d, off):
    d.execute(f"break *{KFUNC + off:#x}")
    d.execute("c")
    out = d.execute("finish").splitlines()
    assert out[0] == f"Run till exit from #0  {KFUNC + off:#x} in bpf_kfunc_arena_read_u64+{off:#x}/0x10"
    assert out[-2] == f"{PROG_CALL_RET:#x} in bpf_prog_c2f59eb016873e5a_arena_arg_unpopulated+0x47/0x50"
    assert out[-1] == "Value returned is $1 = 0x0"
    assert d.running and d.cpu.reg("rip") == PROG_CALL_RET

