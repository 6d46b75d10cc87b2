"""The debugger's commands, driven as scripts drive them: one command in, its output out."""

import pytest

from emu.corpus import bpf_prog
from emu.policy import Policy
from emu.tools.debugger import Debugger


@pytest.fixture
def d() -> Debugger:
    dbg = Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated")
    dbg.execute("set context off")
    return dbg


def kfunc(d: Debugger, off: int = 0) -> int:
    return d.m.symbol("bpf_kfunc_arena_read_u64") + off


def test_stepping_onto_a_scratch_fault_tells_its_story_and_lands_on_the_restarted_instruction(d):
    assert d.execute("break arena_kfuncs.S:15") == f"Breakpoint 1 at {kfunc(d, 4):#x}: file arena_kfuncs.S, line 15."
    assert d.execute("c").splitlines() == [f"Breakpoint 1, {kfunc(d, 4):#x} in bpf_kfunc_arena_read_u64+0x4/0x10",
                                           f"{kfunc(d, 4):#x} in bpf_kfunc_arena_read_u64+0x4/0x10"]
    out = d.execute("si").splitlines()
    kaddr = d.m.arena.kern_vm_start + 0x2620_1000
    assert out[0] == f"fault #1 on CPU 0: #PF read at {kfunc(d, 4):#x} <bpf_kfunc_arena_read_u64+0x4/0x10>"
    assert f"  address (CR2): {kaddr:#x}" in out
    assert "  PTE before: 0 (none)" in out
    assert any(line.startswith(f"  page_fault_oops: bpf_arena_handle_page_fault({kaddr:#x}, read) handled it")
               for line in out)
    assert "  PTE after:  0x8000000000010063 (P RW A D NX)" in out
    assert f"  restart at {kfunc(d, 4):#x}" in out
    assert out[-1] == f"{kfunc(d, 4):#x} in bpf_kfunc_arena_read_u64+0x4/0x10"  # the restarted instruction
    assert d.execute("si").splitlines() == [f"{kfunc(d, 7):#x} in bpf_kfunc_arena_read_u64+0x7/0x10"]
    assert d.execute("p $rax") == "$1 = 0"
    assert d.execute("faults") == ("#1 cpu0 #PF read 0xffffc90036209000 at bpf_kfunc_arena_read_u64+0x4/0x10: "
                                   "scratch (restart)")


def test_catch_fault_stops_before_the_handler_with_the_pte_still_none(d):
    assert d.execute("catch fault") == "Catchpoint (fault)"
    out = d.execute("c").splitlines()
    kaddr = d.m.arena.kern_vm_start + 0x2620_1000
    assert out[0] == (f"Catchpoint (fault): #PF read at {kfunc(d, 4):#x} <bpf_kfunc_arena_read_u64+0x4/0x10>, "
                      f"address {kaddr:#x}, 0x0000 (supervisor read, not-present page)")
    assert out[1] == "  PTE now: 0 (none); the handler has not run yet (si runs it)"
    assert d.execute(f"pte {kaddr:#x}").splitlines()[-1] == "  PTE flags: -"
    assert d.m.stream_text() == ""
    out = d.execute("si").splitlines()
    assert out[0].startswith("fault #1 on CPU 0: #PF read")
    assert out[-1] == f"{kfunc(d, 7):#x} in bpf_kfunc_arena_read_u64+0x7/0x10"  # handler, then the restart
    assert d.execute(f"pte {kaddr:#x}").splitlines()[-1] == \
        f"  PTE flags: P RW A D NX, frame {d.m.arena.scratch_pfn:#x}: arena's scratch page"
    assert d.execute("c") == "[Inferior 1 returned 0x0 (0) after 27 instructions]"


def test_catch_oops_stops_before_the_oops_is_printed():
    d = Debugger([bpf_prog("scratch.S")], "lower_guard")
    d.execute("set context off")
    d.execute("catch oops")
    assert d.execute("c").startswith("Catchpoint (oops): #PF read at ")
    assert d.result.status == "stopped" and d.result.oops is None
    out = d.execute("c")
    assert "BUG: unable to handle page fault for address:" in out and out.endswith("[Inferior 1 oopsed]")


def test_finish_nexti_and_the_value_returned(d):
    d.execute("break bpf_kfunc_arena_read_u64")
    d.execute("c")
    out = d.execute("finish").splitlines()
    assert out[0] == f"Run till exit from #0  {kfunc(d):#x} in bpf_kfunc_arena_read_u64+0x0/0x10"
    assert out[-1] == "Value returned is $1 = 0x0"
    d.execute("run")
    d.execute("delete")
    d.execute("break *0xffffffff810000e2")  # arena_arg_unpopulated's call of the kfunc
    d.execute("c")
    assert d.execute("ni").endswith("0xffffffff810000e7 in bpf_prog_c2f59eb016873e5a_arena_arg_unpopulated+0x47/0x50")


def test_bt_walks_the_frame_pointers(d):
    d.execute("break arena_kfuncs.S:15")
    d.execute("c")
    prog = d.m.progs.by_name["arena_arg_unpopulated"]
    assert d.execute("bt").splitlines() == [
        f"#0  {kfunc(d, 4):#018x} in bpf_kfunc_arena_read_u64+0x4/0x10 () at arena_kfuncs.S:15",
        f"#1  0xffffffff810000e7 in {prog.ksym}+0x47/0x50 () at scratch.S:43",
        "#2  0xffffffff80fff100 in emu_call_return+0x0/0x10 ()"]


def test_examine_memory_in_gdbs_formats(d):
    d.execute("si 4")
    rsp = d.cpu.reg("rsp")
    assert d.execute("x/2gx $rsp") == f"{rsp:#x}:\t0x0000000000000000\t0x0000000000000000"
    assert d.execute("x/3xb $rsp+24").startswith(f"{rsp + 24:#x}:\t0x00\t0xf1\t0xff")
    assert d.execute("x/2i $pc").splitlines()[0].startswith("=> ")
    assert d.execute("x/dg $rsp+24") == f"{rsp + 24:#x}:\t-2130710272"
    assert d.execute("x/4gx 0") == "Cannot access memory at address 0x0"
    assert d.execute("x/2q $pc") == "x/NFU ADDR: F is one of x d u c s i, U one of b h w g"


def test_bad_input_is_one_line_and_the_session_goes_on(d):
    assert d.execute("frobnicate") == 'Undefined command: "frobnicate".  Try "help".'
    assert d.execute("break no_such_symbol") == "undefined symbol 'no_such_symbol'"
    assert d.execute("break scratch.S:9999") == 'No line 9999 in file "scratch.S".'
    assert d.execute("p 1 +") == "expression '1 +' ends early"
    assert d.execute("info registers xmm0") == "Invalid register `xmm0'"
    assert d.execute("delete 7") == "No breakpoint number 7."
    assert d.execute("si").startswith("0xffffffff810000a1 in ")


def test_watch_stops_after_a_write_with_old_and_new_values():
    d = Debugger([bpf_prog("scratch.S")], "scratch_aliasing")
    d.execute("set context off")
    scratch_va = d.m.arena.kern_vm_start + 0x2620_1000
    assert d.execute(f"watch {scratch_va:#x}") == f"Hardware watchpoint 1: *(u64 *){scratch_va:#x}"
    out = d.execute("c").splitlines()
    assert out[-4:-1] == ["", "Old value = 0x0", "New value = 0x41"]
    assert out[-1].endswith("in bpf_kfunc_arena_write_u64+0x7/0x10")


def test_tlb_shows_the_stale_scratch_translation_after_allocation():
    d = Debugger([bpf_prog("scratch.S")], "lost_write")
    d.execute("c")
    a = d.m.arena
    page = a.kern_vm_start + 0x2620_1000
    lines = d.execute("tlb").splitlines()
    assert lines[1].startswith(f"{page:#018x}  0x8000000000010063, frame {a.scratch_pfn:#x}: arena's scratch page")
    assert lines[1].endswith(", frame 0x15: arena")


def test_arena_policy_stream_and_display(d):
    d.execute("display $rdi")
    out = d.execute("c")
    assert "\n" not in d.execute("policy") and d.execute("policy") == "policy scratch, knobs: none"
    assert out.endswith("[Inferior 1 returned 0x0 (0) after 27 instructions]")
    assert d.execute("arena").splitlines()[1:4] == [
        "  pages       0-0       0x7f7d26200000  allocated",
        "  pages       1-1       0x7f7d26201000  scratch (free in the range tree)",
        "  pages       2-1023    0x7f7d26202000  free"]
    assert d.execute("stream stderr").splitlines()[:2] == [
        "--- arena_arg_unpopulated stderr ---", "ERROR: Arena READ access at unmapped address 0x7f7d26201000"]
    assert d.execute("stream stderr").count("ERROR") == 1  # looking does not consume


def test_the_context_view_marks_changed_registers():
    d = Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated")
    out = d.execute("si")
    assert "   RSP 0xffffc90000103ff0*" in out and "   RAX 0x0000000000000000 " in out
    assert "=> 0xffffffff810000a1 <" in out and "─── stack" in out


def test_a_runaway_continue_stops_at_the_budget_and_interrupt_stops_it_early(spin_file):
    d = Debugger([spin_file], "spin", budget=500_000)
    d.execute("set context off")
    assert d.execute("c").startswith("[Inferior 1 stopped: instruction budget of 500000 exhausted at ")
    d = Debugger([spin_file], "spin", budget=10**12)
    d.execute("set context off")
    d.execute("break spin")
    original = d.m.resume
    calls = []

    def resume(count=None, cpu=None):
        calls.append(count)
        if len(calls) == 3:
            d.interrupt()
        return original(count, cpu=cpu)

    d.m.resume = resume
    out = d.execute("c")
    assert out.startswith("Program received signal SIGINT, Interrupt.") and len(calls) == 3


def test_policy_and_knobs_reach_the_machine():
    d = Debugger([bpf_prog("scratch.S")], "lost_write", policy=Policy.parse("scratch", ["flush-on-replace"]))
    assert d.execute("policy") == "policy scratch, knobs: flush-on-replace"
    assert d.execute("c").endswith("[Inferior 1 returned 0x0 (0) after 37 instructions]")


def test_every_command_has_help(d):
    lines = d.execute("help").splitlines()
    assert len(lines) >= 25 and all(len(line.split(None, 1)) == 2 for line in lines)
    assert d.execute("help ni") == "nexti [N]: like stepi, but a call runs to its return (also ni)"


def test_several_cpus_switch_with_cpu_or_thread_and_show_the_stale_translation():
    d = Debugger([bpf_prog("smp.S")], "h3_alloc", cpus=2, others={1: "h3_reader"})
    d.execute("set context off")
    assert d.execute("info threads").splitlines()[1:] == [
        "* 1    0     stopped    " + d.m.symbolize(d.m.symbol("h3_alloc")),
        "  2    1     stopped    " + d.m.symbolize(d.m.symbol("h3_reader"))]
    assert d.execute("thread 2").startswith("[Switching to CPU 1 (running a call)]")
    d.execute("break smp.S:34")
    assert "Breakpoint 1, " in d.execute("c")  # CPU 1's kfunc read faulted and the scratch page is cached
    assert d.execute("cpu 0").startswith("[Switching to CPU 0 (running a call)]")
    assert d.execute("c") == "[CPU 0 returned 0x7f7d26201000 (140175487275008) after 13 instructions]"
    d.execute("cpu 1")
    scratch = d.m.arena.scratch_pfn
    assert d.execute("tlb").splitlines()[1].startswith(f"0xffffc90036209000  0x8000000000{scratch:03x}063, frame "
                                                       f"{scratch:#x}: arena's scratch page")
    assert d.execute("c").startswith("[CPU 1 returned 0x0 (0) after ")
    assert d.m.mem.read_u64(scratch << 12) == 7  # hazard 3: CPU 1's store went to the scratch page
    assert d.execute("cpu 5") == "Invalid CPU 5: this machine has 2."


def test_a_setup_call_runs_first_and_a_finished_free_leaves_no_stale_entry():
    d = Debugger([bpf_prog("smp.S")], "race_free", cpus=3, others={1: "race_alloc", 2: "race_access"},
                 setup="race_setup")
    d.execute("set context off")
    page = f"{d.m.arena.kern_addr(d.m.arena.user_vm_start + 0x3000):#x}"
    assert d.execute(f"pte {page}").splitlines()[-1] == "  PTE flags: P RW A D NX, frame 0x1e: arena"
    d.execute("cpu 2")
    d.execute("stepi 7")  # CPU 2 stores through its translation of page 3
    assert d.execute("faults") == "No faults."
    d.execute("cpu 0")
    assert d.execute("c") == "[CPU 0 returned 0x0 (0) after 9 instructions]"
    assert d.execute(f"pte {page}").splitlines()[-2:] == ["  -> no translation: not-present PTE", "  PTE flags: -"]
    d.execute("cpu 2")
    assert d.execute("tlb") == "No PTE this CPU may have cached has changed since its last flush of it."
