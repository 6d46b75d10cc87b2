"""The command line as gdb's: an empty line repeats the last command at a terminal and from a
pipe (x going on from where it stopped; not run or delete), and a session knows whether its
last command failed, for gdb -batch's exit status."""

import io
import os
import sys
from pathlib import Path

import pexpect
import pytest

from emu.corpus import bpf_prog
from emu.tools.repl import PROMPT, Session

ROOT = Path(__file__).resolve().parent.parent


def test_an_empty_line_from_a_terminal_repeats_a_step(d):
    d.execute("si", from_tty=True)
    assert d.execute("", from_tty=True).startswith("0xffffffff810000a4 in ")
    d.execute("si 2", from_tty=True)
    assert d.execute("", from_tty=True).startswith("0xffffffff810000bb in ")  # with its count


def test_an_empty_line_goes_on_with_x_from_where_it_stopped(d):
    d.execute("si 4")  # three pushes: four words left on the stack
    rsp = d.cpu.reg("rsp")
    d.execute("x/2gx $rsp", from_tty=True)
    assert d.execute("", from_tty=True).startswith(f"{rsp + 16:#x}:\t")
    assert d.execute("", from_tty=True) == f"Cannot access memory at address {rsp + 32:#x}"  # the stack's end


@pytest.mark.parametrize("line", ["run", "delete", "delete 5"])
def test_an_empty_line_does_not_repeat_what_gdb_does_not(d, line):
    d.execute("si")
    d.execute(line, from_tty=True)
    rip = d.cpu.reg("rip")
    assert d.execute("", from_tty=True) == ""
    assert d.cpu.reg("rip") == rip


def test_in_a_script_an_empty_line_does_nothing(d):
    d.execute("si")
    assert d.execute("") == ""
    assert d.cpu.reg("rip") == 0xFFFF_FFFF_8100_00A1


def test_a_session_knows_whether_its_last_command_failed(d):
    session = Session(d, out=io.StringIO())
    assert session.run_script(["bogus"]) and session.failed
    assert session.run_script(["bogus", "p 1"]) and not session.failed
    assert session.run_script(["x/4gx 0"]) and session.failed
    assert session.run_script(["x/100000gx $rsp"]) and session.failed  # printed some, then failed
    assert session.run_script(["delete abc"]) and not session.failed  # a warning, as gdb's
    assert session.run_script(["si 2", ""], from_tty=True) and not session.failed
    assert d.cpu.reg("rip") == 0xFFFF_FFFF_8100_00A7  # si 2 to +0x4, and the empty line from a pipe to +0x7


def test_at_a_terminal_enter_repeats_stepi(tmp_path):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "NO_COLOR": "1", "TERM": "xterm"}
    child = pexpect.spawn(sys.executable, ["-m", "emu.tools.cli", "debug", bpf_prog("scratch.S"), "--entry",
                                           "arena_arg_unpopulated"], cwd=str(ROOT), env=env, encoding="utf-8",
                          timeout=30, dimensions=(50, 200))
    prompt = PROMPT.strip().replace("(", r"\(").replace(")", r"\)")
    child.expect(prompt)
    child.sendline("set context off")
    child.expect(prompt)
    child.sendline("si")
    child.expect_exact("0xffffffff810000a1 in ")
    child.expect(prompt)
    child.sendline("")
    child.expect_exact("0xffffffff810000a4 in ")
    child.expect(prompt)
    child.sendline("quit")
    child.expect(pexpect.EOF)
