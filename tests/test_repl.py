"""`arena-emu debug` as people use it: scripted (-x, -ex, a pipe), at a real terminal, and from gdb."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from emu.corpus import bpf_prog

ROOT = Path(__file__).resolve().parent.parent
DEBUG = [sys.executable, "-m", "emu.tools.cli", "debug"]
PROMPT = r"\(arena-emu\)"  # at a terminal prompt_toolkit draws the space after it with cursor moves


def debug(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([*DEBUG, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "NO_COLOR": "1"})


def test_a_script_from_x_and_ex_runs_and_echoes_its_commands(tmp_path):
    script = tmp_path / "cmds"
    script.write_text("set context off\nbreak arena_kfuncs.S:15\ncontinue\n")
    p = debug(bpf_prog("scratch.S"), "--entry", "arena_arg_unpopulated", "-x", str(script), "-ex", "si",
              "-ex", "info registers rip", "--batch")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert ("(arena-emu) break arena_kfuncs.S:15\n"
            "Breakpoint 1 at 0xffffffff81000004: file arena_kfuncs.S, line 15.\n") in out
    assert "(arena-emu) si\nfault #1 on CPU 0: #PF read at 0xffffffff81000004" in out
    assert out.endswith("(arena-emu) info registers rip\n"
                        "rip            0xffffffff81000004 bpf_kfunc_arena_read_u64+0x4/0x10\n")


def test_commands_from_a_pipe_and_errors_that_do_not_end_the_session():
    p = debug(bpf_prog("scratch.S"), "--entry", "lower_guard", "-ex", "set context off",
              stdin="bogus\nx/2gx 0\nbreak nowhere\nc\n")
    assert p.returncode == 0
    assert 'Undefined command: "bogus".  Try "help".\n' in p.stdout
    assert "Cannot access memory at address 0x0\n" in p.stdout
    assert "undefined symbol 'nowhere'\n" in p.stdout
    assert p.stdout.rstrip().endswith("[Inferior 1 oopsed]")


def test_bad_command_line_input_is_a_one_line_error():
    p = debug("nope.S", "--entry", "x")
    assert (p.returncode, p.stderr) == (2, "arena-emu: cannot read nope.S: No such file or directory\n")
    p = debug(bpf_prog("scratch.S"), "--entry", "no_such_function")
    assert (p.returncode, p.stderr) == (2, 'arena-emu: no symbol "no_such_function" in the loaded files\n')


@pytest.fixture
def tty(tmp_path):
    """A REPL on a real pseudo-terminal, with its own history file."""
    def spawn(*args: str) -> pexpect.spawn:
        env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "NO_COLOR": "1", "TERM": "xterm"}
        child = pexpect.spawn(sys.executable, ["-m", "emu.tools.cli", "debug", *args], cwd=str(ROOT), env=env,
                              encoding="utf-8", timeout=30, dimensions=(50, 200))
        child.expect(PROMPT)
        return child
    return spawn


def test_at_a_terminal_a_scratch_recovery_steps_and_history_is_kept(tty, tmp_path):
    child = tty(bpf_prog("scratch.S"), "--entry", "arena_arg_unpopulated")
    child.sendline("set context off")
    child.expect(PROMPT)
    child.sendline("catch fault")
    child.expect_exact("Catchpoint (fault)")
    child.sendline("c")
    child.expect_exact("PTE now: 0 (none); the handler has not run yet (si runs it)")
    child.expect(PROMPT)
    child.sendline("si")
    child.expect_exact("handled it: arena_arg_unpopulated is on the stack")
    child.expect_exact("0xffffffff81000007 in bpf_kfunc_arena_read_u64+0x7/0x10")
    child.sendline("c")
    child.expect_exact("[Inferior 1 returned 0x0 (0) after 27 instructions]")
    child.expect(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)
    history = (tmp_path / "arena-emu" / "history").read_text()
    assert re.findall(r"^\+(.*)$", history, re.M) == ["set context off", "catch fault", "c", "si", "c"]


def test_at_a_terminal_ctrl_c_interrupts_a_runaway_continue(tty, spin_file):
    child = tty(spin_file, "--entry", "spin", "--budget", str(10**12))
    child.sendline("set context off")
    child.expect(PROMPT)
    child.sendline("continue")
    child.expect_exact("continue")
    time.sleep(1.0)
    child.sendintr()
    child.expect_exact("Program received signal SIGINT, Interrupt.")
    child.expect(r"0xffffffff8100000[47] in spin\+0x[47]/")
    child.expect(PROMPT)
    child.sendline("p/x $rax")
    child.expect(r"\$1 = 0x[0-9a-f]{5,}")  # the loop ran a while before Ctrl-C
    child.sendline("quit")
    child.expect(pexpect.EOF)


def test_tab_completes_commands_and_symbols(tty):
    child = tty(bpf_prog("scratch.S"), "--entry", "arena_arg_unpopulated")
    child.send("brea")
    time.sleep(0.5)  # completion runs in the background as one types
    child.send("\t")
    child.expect("k")
    child.send(" bpf_kfunc_arena_read_f")
    time.sleep(0.5)
    child.send("\t")
    child.expect("ar")
    time.sleep(0.3)
    child.send("\r")
    child.expect_exact("Breakpoint 1 at ")
    child.sendline("info breakpoints")
    child.expect_exact("bpf_kfunc_arena_read_far (file arena_kfuncs.S, line")
    child.sendline("quit")
    child.expect(pexpect.EOF)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed (.ci/run installs it)")
def test_gdb_attaches_single_steps_over_a_fault_and_reads_registers():
    port = _free_port()
    server = subprocess.Popen([*DEBUG, bpf_prog("scratch.S"), "--entry", "arena_arg_unpopulated", "--gdb",
                               str(port), "--once"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout.readline() == (f"arena-emu: listening for gdb on 127.0.0.1:{port} "
                                            f"(target remote :{port})\n")
        gdb = subprocess.run(
            ["gdb", "-nx", "-batch", "-ex", f"target remote 127.0.0.1:{port}", "-ex", "p/x $rip",
             "-ex", "break *0xffffffff81000004", "-ex", "continue", "-ex", "stepi", "-ex", "monitor faults",
             "-ex", "stepi", "-ex", "p/x $rip", "-ex", "p/x $rax", "-ex", "p/x $rdi", "-ex", "x/gx $rdi",
             "-ex", "continue"],
            capture_output=True, text=True, timeout=60)
    finally:
        server.wait(timeout=30)
    out = gdb.stdout + gdb.stderr
    assert "$1 = 0xffffffff810000a0" in out
    assert "Breakpoint 1, 0xffffffff81000004 in ?? ()" in out
    assert "Program received signal SIGSEGV, Segmentation fault." in out
    assert "#1 cpu0 #PF read 0xffffc90036209000 at bpf_kfunc_arena_read_u64+0x4/0x10: caught, the handler has " \
           "not run yet" in out
    assert "$2 = 0xffffffff81000007" in out  # the handler ran, the load restarted and completed
    assert "$3 = 0x0" in out and "$4 = 0xffffc90036209000" in out
    assert "0xffffc90036209000:\t0x0000000000000000" in out  # read through the page tables: the scratch page
    assert "[Inferior 1 (Remote target) exited normally]" in out
    assert server.returncode == 0


def test_the_gdb_server_listens_on_loopback_only():
    server = subprocess.Popen([*DEBUG, bpf_prog("scratch.S"), "--entry", "arena_arg_unpopulated", "--gdb", "0",
                               "--once"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", server.stdout.readline()).group(1))
        listening = [line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port]
        assert listening == [f"0100007F:{port:04X}"]  # 127.0.0.1 only, no other interface
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"$D#44")
            reply = b""
            while not reply.endswith(b"#9a"):
                reply += conn.recv(64)
            assert reply == b"+$OK#9a"  # acknowledged, then detached
    finally:
        server.wait(timeout=30)
    assert server.returncode == 0


def _rsp(conn: socket.socket, data: bytes) -> bytes:
    """Send one packet, return the reply packet's payload."""
    from emu.tools.gdbstub import frame

    conn.sendall(frame(data))
    return _reply(conn)


def _reply(conn: socket.socket) -> bytes:
    buf = b""
    while not re.search(rb"\$[^#]*#[0-9a-f]{2}$", buf):
        buf += conn.recv(4096)
    return re.search(rb"\$([^#]*)#", buf).group(1)


def test_the_gdb_server_stops_a_running_continue_on_ctrl_c(spin_file):
    server = subprocess.Popen([*DEBUG, spin_file, "--entry", "spin", "--budget", str(10**12), "--gdb", "0", "--once"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", server.stdout.readline()).group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            assert _rsp(conn, b"?") == b"S05"
            conn.sendall(b"$c#63")
            time.sleep(0.5)
            conn.sendall(b"\x03")
            assert _reply(conn) == b"S02"  # SIGINT, as gdb expects after Ctrl-C
            rip = int.from_bytes(bytes.fromhex(_rsp(conn, b"p10").decode()), "little")
            assert rip in (0xFFFF_FFFF_8100_0004, 0xFFFF_FFFF_8100_0007)  # inside the loop
            rax = int.from_bytes(bytes.fromhex(_rsp(conn, b"p0").decode()), "little")
            assert rax > 100_000
            assert _rsp(conn, b"m0,8") == b"E14"  # nothing mapped at 0
            assert _rsp(conn, b"D") == b"OK"
    finally:
        server.wait(timeout=30)
