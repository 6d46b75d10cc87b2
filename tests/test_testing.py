"""The assertion helpers of emu.testing: what they accept, and what they say when they fail."""

import pytest

from emu.testing import (
    assert_fixed_up,
    assert_no_fault,
    assert_oops,
    assert_reported_once,
    assert_restarted,
    assert_text_matches,
    assert_write_lost,
    text_matches,
)

UVM = 0x7F7D_2620_0000


@pytest.mark.policies("scratch")
def test_restart_and_report_helpers_pass_on_a_scratch_recovery(machine, load):
    load("bpf_progs/scratch.S")
    r = machine.call("arena_arg_unpopulated")
    e = assert_restarted(r, at="bpf_kfunc_arena_read_u64+4", machine=machine)
    assert assert_restarted(machine, at=e.rip) is e
    assert assert_reported_once(machine, UVM + 0x1000, access="read").startswith("ERROR: Arena READ access")


def test_assert_restarted_says_why_not_and_tells_the_story(machine, load):
    load("bpf_progs/stream.S")
    r = machine.call("stream_arena_read_fault")
    rip = r.faults[0].rip
    with pytest.raises(AssertionError) as e:
        assert_restarted(r, at=rip)
    lines = str(e.value).splitlines()
    assert lines[0] == (f"fault #1 at {rip:#x} <{r.faults[0].where}>: it was resolved by extable, not scratch; "
                        "the instruction was not restarted (skip); the PTE is still none after the handler; "
                        "the restarted instruction did not complete (not seen again)")
    assert lines[1].startswith("fault #1 on CPU 0: #PF read at ")
    with pytest.raises(AssertionError) as e:
        assert_restarted(r, at=rip + 1)
    assert str(e.value).startswith(f"expected a fault restarted after the scratch fixup at {rip + 1:#x}, but no "
                                   "fault happened there; the faults were:\nfault #1 on CPU 0")


def test_assert_fixed_up_checks_the_cleared_register(machine, load):
    load("bpf_progs/stream.S")
    r = machine.call("stream_arena_read_fault")
    assert_fixed_up(r, at="stream_arena_read_fault+0x1c", cleared="rax", machine=machine)
    with pytest.raises(AssertionError) as e:
        assert_fixed_up(r, at="stream_arena_read_fault+0x1c", cleared=None, machine=machine)
    assert "rax was cleared, not no register" in str(e.value).splitlines()[0]


def test_assert_reported_once_counts_reports_of_that_address(machine, load):
    load("bpf_progs/scratch.S")
    machine.call("same_page_twice")
    with pytest.raises(AssertionError) as e:
        assert_reported_once(machine, UVM + 0x1008)
    assert str(e.value).splitlines()[:2] == [
        f"expected one stderr report of unmapped address {UVM + 0x1008:#x}, found 0; stderr holds:",
        f"ERROR: Arena READ access at unmapped address {UVM + 0x1000:#x}"]
    with pytest.raises(AssertionError, match="is not a WRITE access"):
        assert_reported_once(machine, UVM + 0x1000, access="write")


@pytest.mark.policies("oops")
def test_assert_oops_matches_the_first_line(machine, load):
    load("bpf_progs/scratch.S")
    r = machine.call("arena_arg_unpopulated")
    assert_oops(r, "BUG: unable to handle page fault for address: {{[0-9a-f]{16}}}")
    with pytest.raises(AssertionError) as e:
        assert_oops(r, "BUG: kernel NULL pointer dereference, address: {{.*}}")
    assert str(e.value).splitlines()[:4] == [
        "the oops starts", "  BUG: unable to handle page fault for address: ffffc90036209000", "not",
        "  BUG: kernel NULL pointer dereference, address: {{.*}}"]


def test_assert_oops_on_a_call_that_returned(machine, load):
    load("bpf_progs/scratch.S")
    r = machine.call("kfunc_list_sum")
    with pytest.raises(AssertionError, match=r"^expected an oops, but the call returned: <CallResult kfunc_list_sum"):
        assert_oops(r, "BUG: {{.*}}")
    assert_no_fault(r)


def test_assert_no_fault_lists_the_faults(machine, load):
    load("bpf_progs/scratch.S")
    r = machine.call("same_page_twice")
    with pytest.raises(AssertionError) as e:
        assert_no_fault(r)
    assert str(e.value).splitlines()[:2] == [
        "expected no fault, but 1 happened:",
        "fault #1 on CPU 0: #PF read at 0xffffffff81000004 <bpf_kfunc_arena_read_u64+0x4/0x10>"]


@pytest.mark.policies("scratch", "scratch+flush-on-replace")
def test_assert_write_lost_depends_on_the_flush(policy, machine, load):
    load("bpf_progs/scratch.S")
    machine.call("lost_write")
    page1 = machine.arena.kern_addr(UVM + 0x1000)
    if policy.flush_on_replace:
        with pytest.raises(AssertionError, match=f"the write of 0x7 reached {page1:#x}"):
            assert_write_lost(machine, page1, 7)
    else:
        assert_write_lost(machine, page1, 7)


def test_text_templates_have_regex_holes():
    assert text_matches("CPU: 3 PID: 77", "CPU: {{[0-9]+}} PID: {{[0-9]+}}")
    assert text_matches("a{2}", "a{{\\{[0-9]\\}}}")
    assert not text_matches("CPU: x", "CPU: {{[0-9]+}}")
    assert text_matches("ff00", "{{[0-9a-f]{4}}}")
    with pytest.raises(AssertionError) as e:
        assert_text_matches("one\ntwo\nthree", "one\n{{t.o}}\nfour")
    assert str(e.value).splitlines()[:3] == ["line 3 differs:", "  expected: four", "  actual:   three"]
    with pytest.raises(AssertionError, match="the text goes on after 1 lines"):
        assert_text_matches("one\ntwo", "one")
