"""After an oops the call is over, but its registers, stack and memory stay to look at until
the next `run`, as a core file's do in gdb."""

from emu.corpus import bpf_prog
from emu.tools.debugger import Debugger


def test_the_oops_site_stays_inspectable_until_run():
    d = Debugger([bpf_prog("scratch.S")], "lower_guard")
    d.execute("set context off")
    assert d.execute("c").endswith("[Inferior 1 oopsed]")
    oops = d.m.events[-1]
    report = oops.report.splitlines()
    rip_line = next(line for line in report if line.startswith("RIP: "))
    assert rip_line.endswith(oops.where)
    assert d.execute("info registers rip") == f"rip            {oops.rip:<#19x}{oops.where}"
    rsp = next(line for line in report if line.startswith("RSP: ")).split()[1].split(":")[1]
    assert d.execute("p/x $rsp") == f"$1 = {int(rsp, 16):#x}"
    bt = d.execute("bt").splitlines()
    assert bt[0].startswith(f"#0  {oops.rip:#018x} in {oops.where} ()")
    assert bt[-1] == "#2  0xffffffff80fff100 in emu_call_return+0x0/0x10 ()"
    assert d.execute("x/gx $rsp").startswith(f"{int(rsp, 16):#x}:\t0x")
    assert "=> " in d.execute("context")
    assert d.execute("si") == "The program is not being run."
    d.execute("run")
    assert d.execute("info registers rip").startswith(f"rip            {d.m.symbol('lower_guard'):#x}")
    assert d.execute("c").endswith("[Inferior 1 oopsed]")


def test_a_returned_call_has_no_registers():
    d = Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated")
    d.execute("set context off")
    d.execute("c")
    assert d.execute("info registers") == "The program has no registers now."
    assert d.execute("bt") == "No stack."
