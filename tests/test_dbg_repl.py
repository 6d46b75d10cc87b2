"""A session knows whether its last command failed, for gdb -batch's exit status."""

import io

from emu.corpus import bpf_prog
from emu.tools.debugger import Debugger
from emu.tools.repl import Session


def test_a_session_knows_whether_its_last_command_failed():
    d = Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated")
    session = Session(d, out=io.StringIO())
    assert session.run_script(["bogus"]) and session.failed
    assert session.run_script(["bogus", "p 1"]) and not session.failed
    assert session.run_script(["x/4gx 0"]) and session.failed
    assert session.run_script(["x/100000gx $rsp"]) and session.failed  # printed some, then failed
    assert session.run_script(["delete abc"]) and not session.failed  # a warning, as gdb's
