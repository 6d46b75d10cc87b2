"""Bad arguments get gdb's answer and the session goes on: delete's numbers, ranges and
lists, x with no address, step counts of zero or less, and the same through gdb's monitor."""

import re
import socket

import pytest

from emu.tools.debugger import Debugger
from emu.tools.gdbstub import GdbServer


@pytest.fixture(autouse=True)
def three_breakpoints(d: Debugger) -> None:
    for where in ("bpf_kfunc_arena_read_u64", "bpf_arena_alloc_pages", "*0xffffffff810000a4"):
        d.execute(f"break {where}")


@pytest.mark.parametrize(("line", "said"), [
    ("delete abc", "warning: bad breakpoint number at or near 'abc'"),
    ("delete 1.5", "warning: bad breakpoint number at or near '1.5'"),
    ("delete 0x1", "warning: bad breakpoint number at or near '0x1'"),
    ("delete 0", "warning: bad breakpoint number at or near '0'"),
    ("delete $foo", "Convenience variable must have integer value.\n"
                    "warning: bad breakpoint number at or near '$foo'"),
    ("delete $1", "History has not yet reached $1."),
    ("delete 3-1", "inverted range"),
    ("delete 2-", "inverted range"),
    ("delete -1", "negative value"),
])
def test_delete_answers_bad_numbers_as_gdb_and_deletes_nothing(d, line, said):
    assert d.execute(line) == said
    assert sorted(d.breakpoints) == [1, 2, 3]


def test_delete_takes_ranges_lists_and_history_values(d):
    assert d.execute("delete 1 7") == "No breakpoint number 7."
    assert sorted(d.breakpoints) == [2, 3]
    assert d.execute("delete 2-4") == "No breakpoint number 4."
    assert d.breakpoints == {}
    d.execute("break bpf_kfunc_arena_read_u64")
    d.execute("p 4")
    assert d.execute("delete abc $1 9-99999999999") == ("warning: bad breakpoint number at or near 'abc'\n"
                                                         "No breakpoint number 9.")
    assert d.breakpoints == {}


def test_x_needs_an_address_until_one_was_examined(d):
    assert d.execute("x") == "Argument required (starting display address)."
    assert d.execute("x/2xb") == "Argument required (starting display address)."
    assert len(d.execute("x/2i $pc").splitlines()) == 2  # push %rbp at +0, mov %rsp,%rbp at +1
    assert d.execute("x").startswith("   0xffffffff810000a4 <")  # on from where the last one stopped
    assert d.execute("x/gx").startswith("0xffffffff810000a6 <")


@pytest.mark.parametrize("line", ["si -5", "si 0", "stepi -1", "ni -5", "ni 0"])
def test_a_step_count_of_zero_or_less_runs_nothing_and_says_where(d, line):
    assert d.execute(line) == "0xffffffff810000a0 in bpf_prog_c2f59eb016873e5a_arena_arg_unpopulated+0x0/0x50"
    assert d.running and d.cpu.reg("rip") == 0xFFFF_FFFF_8100_00A0


def test_monitor_delete_abc_answers_and_the_server_goes_on(d):
    ours, gdbs = socket.socketpair()
    with ours, gdbs:
        server = GdbServer(d, ours)
        server.handle(b"qRcmd," + b"delete abc".hex().encode())
        assert server.left is None
        gdbs.settimeout(10)
        reply = b""
        while not reply.endswith(b"$OK#9a"):
            reply += gdbs.recv(4096)
        text = b"".join(bytes.fromhex(h.decode()) for h in re.findall(rb"\$O([0-9a-f]+)#", reply))
        assert text == b"warning: bad breakpoint number at or near 'abc'\n"
        server.handle(b"qRcmd," + b"info breakpoints".hex().encode())
        assert server.left is None


def test_a_display_gdb_cannot_parse_is_refused_and_stops_still_report(d):
    assert d.execute("display/i $foo") == "undefined symbol '$foo'"
    assert d.execute("display $nope") == "undefined symbol '$nope'"
    assert d.displays == []
    d.execute("display $rsp")
    assert d.execute("si").splitlines()[-1] == "1: $rsp = 0xffffc90000103ff0"


@pytest.mark.parametrize(("line", "said"), [
    ("info frob", 'Undefined info command: "frob".  Try "help info".'),
    ("catch frob", 'Undefined catch command: "frob".  Try "help catch".'),
    ("watch", "Argument required (expression to compute)."),
    ("pte", "Argument required (expression to compute)."),
])
def test_unknown_subcommands_and_missing_expressions_in_gdbs_words(d, line, said):
    assert d.execute(line) == said and d.failed


def test_delete_breakpoints_is_delete(d):
    assert d.execute("delete breakpoints 1") == ""
    assert sorted(d.breakpoints) == [2, 3]
    d.execute("delete breakpoints")
    assert d.breakpoints == {}
