"""The debugger in JIT-compiled BPF C: the `bpf` command, the context view's C line and BPF instruction, and
the BPF instruction in a fault's story."""

import re

import pytest
from bpf_build import build, build_exact

from emu.corpus import bpf_prog, stub
from emu.machine import Machine
from emu.tools.debugger import Debugger
from emu.tools.prog_dump import prog_dump


@pytest.fixture
def d():
    dbg = Debugger([str(build_exact("dump"))], "dump_me", [])
    dbg.execute("set context off")
    return dbg


def _tag(d: Debugger) -> str:
    return d.m.bpf.progs.by_name["dump_me"].tag


def test_bpf_names_the_instruction_and_c_line_the_x86_code_came_from(d):
    assert d.execute("bpf").splitlines() == [
        "; int dump_me(void *ctx) [dump.bpf.c:23]",
        f"in the prologue of bpf_prog_{_tag(d)}_dump_me, before its first BPF instruction"]
    d.execute("break dump.bpf.c:31")
    d.execute("c")
    assert d.execute("bpf").splitlines() == ["; total = 5; [dump.bpf.c:31]", "  11: (18) r1 = 0x10000001000"]
    d.execute("stepi 3")  # ld_imm64, the cast, r2 = 5: now at the store into the arena
    assert d.execute("x/i $pc").endswith("movq %rsi, (%rdi, %r12)")
    assert d.execute("bpf").splitlines() == ["; total = 5; [dump.bpf.c:31]",
                                            "  15: (7b) *(u64 *)(r1 +0) = r2\t[STX|PROBE_MEM32|DW]"]


def test_bpf_in_a_subprogram_counts_the_whole_programs_instructions(d):
    d.execute("break bump")
    d.execute("c")
    d.execute("stepi 7")  # the prologue (6) and r0 = r1
    assert d.execute("bpf").splitlines() == ["; return __sync_fetch_and_add(p, by); [dump.bpf.c:19]",
                                            "  23: (18) r1 = 0x10000001000"]


def test_the_context_view_shows_the_c_line_and_bpf_instruction_above_the_x86_code(d):
    d.execute("break dump.bpf.c:31")
    d.execute("c")
    code = d.context().split("─── code ")[1].splitlines()
    assert code[1:3] == ["  ; total = 5; [dump.bpf.c:31]", "    11: (18) r1 = 0x10000001000"]
    assert code[3].startswith("   0x") and any(line.startswith("=> 0x") for line in code[3:])


def test_bpf_outside_bytecode_says_why():
    dbg = Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated")
    dbg.execute("set context off")
    out = dbg.execute("bpf")
    assert re.fullmatch(r"0x[0-9a-f]+ <bpf_prog_[0-9a-f]{16}_arena_arg_unpopulated\+0x0/0x50> is in a BPF program "
                        r"written in assembly: it has no BPF instructions\.", out) and dbg.failed
    dbg.execute("break bpf_kfunc_arena_read_u64")
    dbg.execute("c")
    out = dbg.execute("bpf")
    assert re.fullmatch(r"0x[0-9a-f]+ <bpf_kfunc_arena_read_u64\+0x0/0x[0-9a-f]+> is not in a BPF program\.", out)


def test_a_fault_story_names_the_bpf_instruction_as_the_xlated_dump_prints_it():
    path = build("use_after_free")
    m = Machine()
    obj = m.load_bpf(str(path))
    fault = obj.run("use_after_free").faults[0]
    story = fault.story().splitlines()
    assert story[1] == f"  instruction: {fault.insn}"
    assert story[2] == f"  BPF instruction: {fault.bpf_insn}" and story[3].startswith("  source: ")
    index, _, text = fault.bpf_insn.partition(": ")
    assert re.fullmatch(r"\(79\) r(\d) = \*\(u64 \*\)\(r\d \+0\)", text)  # return *page;
    dumped = prog_dump(m.bpf, obj, "use_after_free", "xlated").text.splitlines()
    assert f"{int(index):4d}: {text}" in dumped
    assert obj.run("use_after_free").to_json()["faults"][0]["bpf_insn"] == fault.bpf_insn


def test_bpf_takes_an_address(d):
    d.execute("break dump.bpf.c:31")
    d.execute("c")
    assert d.execute("bpf $pc+0x11").splitlines() == ["; total = 5; [dump.bpf.c:31]",
                                                     "  15: (7b) *(u64 *)(r1 +0) = r2\t[STX|PROBE_MEM32|DW]"]
    assert d.execute("bpf bump").splitlines() == [
        "; static __noinline __u64 bump(__u64 __arena *p, __u64 by) [dump.bpf.c:17]",
        f"in the prologue of bpf_prog_{_tag(d)}_bump, before its first BPF instruction"]


def test_finish_and_next_stop_as_gdb_does_without_showing_their_internal_breakpoints():
    dbg = Debugger([stub("arena_kfuncs.S"), bpf_prog("off_by_one.bpf.o")], "off_by_one", [])
    dbg.execute("set context off")
    assert dbg.execute("break off_by_one.bpf.c:21") == (
        "Breakpoint 1 at 0xffffffff81000139: file off_by_one.bpf.c, line 21.")
    dbg.execute("continue")
    dbg.execute("step")
    out = dbg.execute("finish").splitlines()
    assert out[0] == "Run till exit from #0  0xffffffff81000000 in bpf_kfunc_arena_read_u64+0x0/0x10"
    assert out[-2:] == ["0xffffffff8100014b in bpf_prog_c62366945a60014a_off_by_one+0xab/0xc1",
                        "Value returned is $1 = 0x0"]
    assert not any("Temporary breakpoint" in line for line in out)
    assert dbg.execute("break off_by_one.bpf.c:20").startswith("Breakpoint 2 at 0x")  # gdb numbers only the user's
    assert dbg.execute("info breakpoints").splitlines()[1:] == [
        "1       breakpoint     keep 0xffffffff81000139 off_by_one.bpf.c:21 (file off_by_one.bpf.c, line 21)",
        "\tbreakpoint already hit 1 time",
        "2       breakpoint     keep 0xffffffff81000102 off_by_one.bpf.c:20 (file off_by_one.bpf.c, line 20)"]


def test_finish_with_no_breakpoint_set_runs_to_the_caller():
    dbg = Debugger([stub("arena_kfuncs.S"), bpf_prog("off_by_one.bpf.o")], "off_by_one", [])
    dbg.execute("set context off")
    assert dbg.execute("break bpf_kfunc_arena_read_u64").startswith("Breakpoint 1 at 0xffffffff81000000")
    assert "Breakpoint 1, 0xffffffff81000000" in dbg.execute("continue")
    dbg.execute("delete")
    assert dbg.breakpoints == {}
    out = dbg.execute("finish").splitlines()
    assert out[0] == "Run till exit from #0  0xffffffff81000000 in bpf_kfunc_arena_read_u64+0x0/0x10"
    assert out[-1] == "Value returned is $1 = 0x0"
