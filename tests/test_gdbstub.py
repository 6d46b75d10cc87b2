"""The gdb server against what gdb and a hostile client send: driven in process over a socketpair."""

import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.corpus import bpf_prog
from emu.tools.debugger import Debugger
from emu.tools.gdbstub import MAX_PAYLOAD, PACKET_SIZE, REGS, TARGET_XML, GdbServer, PacketReader, frame, serve_on

ROOT = Path(__file__).resolve().parent.parent
FAULT_ADDRESS = 0xFFFF_C900_3620_9000  # arena_arg_unpopulated's load: the second page of the object
FAULT_RIP = 0xFFFF_FFFF_8100_0004
RIP = b"10"  # gdb's amd64 numbering: 16 GPRs, then rip
CR2 = b"%x" % [r.name for r in REGS].index("cr2")
STOP = re.compile(rb"[ST][0-9a-f]{2}.*|[WX][0-9a-f]{2}", re.S)


class Client:
    """gdb's end of a connection: frames packets, reads acks and replies, with a timeout for a hang."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sock.settimeout(20)
        self.buf = b""
        self.output = ""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def ack(self) -> bytes:
        while not self.buf:
            self._fill()
        ack, self.buf = self.buf[:1], self.buf[1:]
        return ack

    def reply(self) -> bytes:
        """The next reply's payload, console output (O packets) collected on the way; checked."""
        while True:
            while not (m := re.match(rb"\$([^#]*)#([0-9a-f]{2})", self.buf, re.S)):
                assert not self.buf or self.buf.startswith(b"$"), self.buf[:40]
                self._fill()
            self.buf = self.buf[m.end():]
            data = m.group(1)
            assert frame(data) == m.group(0)
            if re.fullmatch(rb"O(?:[0-9a-f]{2})+", data):
                self.output += bytes.fromhex(data[1:].decode()).decode()
            else:
                return data

    def ask(self, data: bytes) -> bytes:
        self.sock.sendall(frame(data))
        assert self.ack() == b"+"
        return self.reply()


class Session:
    """A GdbServer serving one end of a socketpair in a thread; a Client on the other end."""

    def __init__(self, debugger: Debugger):
        ours, theirs = socket.socketpair()
        self.server = GdbServer(debugger, theirs)
        self.client = Client(ours)
        self.left: list = []
        self.thread = threading.Thread(target=self._serve, args=(theirs,), daemon=True)
        self.thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            self.left.append(self.server.serve())
        except Exception as e:  # reported by end(), so a test sees any exception of the server
            self.left.append(e)
        finally:
            sock.close()

    def end(self) -> object:
        """Close gdb's end; how the server left (or the exception it raised)."""
        self.client.sock.close()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "the server hangs"
        return self.left[0]


def rip(client: Client) -> int:
    return int.from_bytes(bytes.fromhex(client.ask(b"p" + RIP).decode()), "little")


@pytest.fixture
def scratch() -> Debugger:
    return Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated")


MALFORMED = [
    b"mzz,8", b"m10", b"m-1,8", b"m 10,8", b"m0x10,8", b"m10,8,8", b"m10000000000000000,8",
    b"M10,2:zz", b"M10,2:00", b"M10:00", b"M10,1", b"M10,1:0",
    b"pzz", b"p", b"p-1", b"p 1", b"p999",
    b"P-1=00", b"P0=zz", b"P0", b"P0=00", b"P12=00000000",  # cs: not the debugger's to change
    b"qXfer:features:read:target.xml:zz,10", b"qXfer:features:read:target.xml:0", b"qXfer:features:read:other.xml:0,10",
    b"qXfer:features:read:", b"qRcmd,zz", b"qRcmd,f", b"qRcmd,ff",
    b"Z0,zz,1", b"Z0,10", b"Z", b"z0,,1", b"Z5,10,1",
]


def test_each_malformed_packet_gets_e01_and_the_session_goes_on(scratch):
    s = Session(scratch)
    c = s.client
    before = rip(c)
    for pkt in MALFORMED:
        assert c.ask(pkt) == b"E01", pkt
    assert rip(c) == before  # P-1=00 wrote no register
    assert c.ask(b"m0,8") == b"E14"  # nothing mapped at 0: EFAULT
    assert c.ask(b"M0,1:00") == b"E14"
    assert c.ask(b"?") == b"S05"
    assert s.end() == "eof"


def test_a_bad_checksum_is_nakked_and_the_resent_packet_answered(scratch):
    s = Session(scratch)
    c = s.client
    c.sock.sendall(b"$g#00")
    assert c.ack() == b"-"
    assert len(c.ask(b"g")) == 2 * 536  # the amd64 core and SSE registers
    assert c.ask(b"QStartNoAckMode") == b"OK"
    c.sock.sendall(frame(b"?"))
    assert c.reply() == b"S05"  # no `+` before it any more
    assert s.end() == "eof"


def test_a_large_read_is_split_to_the_packet_size(scratch):
    va = scratch.m.vmalloc(0x10000)  # 64 KiB, then an unmapped page
    pattern = bytes(range(256)) * 0x100
    scratch.m.write(va, pattern)
    c = Session(scratch).client
    got = b""
    while len(got) < len(pattern):  # as gdb does: ask again for the rest
        data = c.ask(b"m%x,%x" % (va + len(got), 256 << 20))
        assert len(data) <= MAX_PAYLOAD
        got += bytes.fromhex(data.decode())
    assert got[:len(pattern)] == pattern and len(got) == len(pattern)  # it stopped at the unmapped page
    assert c.ask(b"m%x,40" % (va + 0x10000 - 0x10)) == pattern[-0x10:].hex().encode()  # partial: what is there
    assert c.ask(b"qSupported:multiprocess+").startswith(b"PacketSize=%x;" % PACKET_SIZE)


def test_an_unterminated_flood_is_bounded_and_scanned_once():
    reader = PacketReader()
    started = time.monotonic()
    reader.feed(b"$")
    for _ in range(4096):  # 16 MiB: rescanning the whole buffer on each read would take minutes
        reader.feed(b"a" * 4096)
    assert time.monotonic() - started < 10
    assert not reader.packets and reader.buffered <= PACKET_SIZE
    reader.feed(b"#00garbage+-$?#3f")
    assert [p.data for p in reader.packets] == [b"?"]


def test_after_a_flood_the_session_answers(scratch):
    s = Session(scratch)
    c = s.client
    for _ in range(256):
        c.sock.sendall(b"x" * 4096)
    c.sock.sendall(b"$" + b"m" * (4 * PACKET_SIZE))
    assert c.ask(b"?") == b"S05"
    assert s.end() == "eof"


def test_the_target_description_is_read_in_pieces(scratch):
    c = Session(scratch).client
    got, off = b"", 0
    while True:
        data = c.ask(b"qXfer:features:read:target.xml:%x,%x" % (off, 0x40))
        got += data[1:]
        off += len(data) - 1
        if data[:1] == b"l":
            break
        assert data[:1] == b"m" and len(data) == 0x41
    assert got == TARGET_XML


# -- fuzzing: whatever comes, a reply or a NAK, never an exception or a hang ------

SEEDS = [b"?", b"g", b"p10", b"p3b", b"P0=0100000000000000", b"m ffffffff81000000,10", b"mffffffff81000000,100",
         b"Mffffc90036208000,1:07", b"qXfer:features:read:target.xml:0,100", b"qRcmd," + b"info threads".hex().encode(),
         b"Z0,ffffffff81000004,1", b"z0,ffffffff81000004,1", b"Hg1", b"Hc-1", b"T1", b"qC", b"qfThreadInfo",
         b"qSupported:multiprocess+;swbreak+", b"vCont?", b"s", b"vCont;s:1;c", b"qThreadExtraInfo,1", b"qAttached",
         b"S0b", b"C0b;ffffffff81000004", b"Z2,ffffc90036208000,8", b"vMustReplyEmpty", b"X0,0:"]
ENDS_SESSION = (b"D", b"k", b"QStartNoAckMode")


def _mutations(seed: bytes):
    no_frame_bytes = st.binary(max_size=24).map(lambda b: b.replace(b"$", b"").replace(b"#", b""))
    return st.one_of(
        st.just(seed),
        st.tuples(st.integers(0, len(seed)), no_frame_bytes).map(lambda t: seed[:t[0]] + t[1] + seed[t[0]:]),
        st.integers(0, len(seed)).map(lambda i: seed[:i]),
        st.tuples(st.integers(0, max(len(seed) - 1, 0)), st.integers(0, 255)).map(
            lambda t: seed[:t[0]] + bytes([t[1]]) + seed[t[0] + 1:] if bytes([t[1]]) not in b"$#" else seed),
        no_frame_bytes)


PACKETS = st.sampled_from(SEEDS).flatmap(_mutations).filter(lambda p: not p.startswith(ENDS_SESSION))


@pytest.fixture(scope="module")
def fuzzed() -> Debugger:
    return Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated")


@settings(max_examples=150, deadline=None)
@given(packets=st.lists(st.tuples(PACKETS, st.booleans()), min_size=1, max_size=8),
       garbage=st.binary(max_size=64))
def test_fuzzed_packets_get_a_reply_or_a_nak_and_the_session_answers_after(fuzzed, packets, garbage):
    s = Session(fuzzed)
    c = s.client
    for data, intact in packets:
        framed = frame(data)
        c.sock.sendall(framed if intact else framed[:-2] + b"%02x" % ((int(framed[-2:], 16) + 1) & 0xFF))
        if intact:
            assert c.ack() == b"+"
            c.reply()
        else:
            assert c.ack() == b"-"
    c.sock.sendall(garbage.replace(b"$", b""))
    assert STOP.fullmatch(c.ask(b"?"))
    assert s.end() == "eof"


@pytest.fixture
def two_cpus() -> Debugger:
    return Debugger([bpf_prog("smp.S")], "h3_alloc", cpus=2, others={1: "h3_reader"})


def test_each_cpu_is_a_thread(two_cpus):
    d = two_cpus
    c = Session(d).client
    assert c.ask(b"qfThreadInfo") == b"m1,2" and c.ask(b"qsThreadInfo") == b"l"
    assert c.ask(b"qC") == b"QC1"
    assert [c.ask(b"T%d" % n) for n in (1, 2, 3, 0)] == [b"OK", b"OK", b"E01", b"E01"]
    assert bytes.fromhex(c.ask(b"qThreadExtraInfo,2").decode()) == b"CPU 1 (running a call)"
    assert c.ask(b"Hg2") == b"OK" and rip(c) == d.m.symbol("h3_reader")
    assert c.ask(b"Hg1") == b"OK" and rip(c) == d.m.symbol("h3_alloc")
    assert c.ask(b"Hg3") == b"E01"
    assert c.ask(b"vCont;s:2;c") == b"T05thread:2;"  # thread 2 stepped: CPU 1
    assert d.m.cpus[1].reg("rip") == d.m.symbol("h3_reader") + 1
    assert d.m.cpus[0].reg("rip") == d.m.symbol("h3_alloc")
    assert c.ask(b"?") == b"T05thread:2;"
    assert c.ask(b"Hc1") == b"OK" and c.ask(b"s") == b"T05thread:1;"  # Hc picks the CPU `s` steps
    assert d.m.cpus[0].reg("rip") == d.m.symbol("h3_alloc") + 1


def test_cr2_at_a_fault_stop_is_the_fault_address(scratch):
    c = Session(scratch).client
    assert c.ask(b"c") == b"S0b"  # SIGSEGV before the handler runs
    assert int.from_bytes(bytes.fromhex(c.ask(b"p" + CR2).decode()), "little") == FAULT_ADDRESS
    assert scratch.m.events[-1].address == FAULT_ADDRESS


def test_the_target_description_numbers_every_register_gdb_reads():
    target = ET.fromstring(TARGET_XML)
    features = [f.get("name") for f in target.iter("feature")]
    assert features[:2] == ["org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse"]
    regs = [(r.get("name"), int(r.get("regnum")), int(r.get("bitsize"))) for r in target.iter("reg")]
    assert regs == [(r.name, i, r.bits) for i, r in enumerate(REGS)]
    assert [n for n, _, _ in regs[-5:]] == ["cr0", "cr2", "cr3", "cr4", "efer"]


def _listener() -> socket.socket:
    return socket.create_server(("127.0.0.1", 0))


def test_two_gdbs_one_after_another_see_the_same_target(scratch):
    with _listener() as listener:
        port = listener.getsockname()[1]
        server = threading.Thread(target=serve_on, args=(scratch, listener, True), daemon=True)
        server.start()
        with socket.create_connection(("127.0.0.1", port)) as conn:
            c = Client(conn)
            assert c.ask(b"Z0,%x,1" % FAULT_RIP) == b"OK"
            assert c.ask(b"vCont;c") == b"S05"  # the breakpoint
            assert c.ask(b"D") == b"OK"
        with socket.create_connection(("127.0.0.1", port)) as conn:
            c = Client(conn)
            assert c.ask(b"?") == b"S05"
            assert rip(c) == FAULT_RIP  # as the first gdb left it
            assert c.ask(b"k") == b"OK"
        server.join(timeout=20)
        assert not server.is_alive()


def test_with_once_the_server_serves_one_gdb(scratch):
    with _listener() as listener:
        server = threading.Thread(target=serve_on, args=(scratch, listener, False), daemon=True)
        server.start()
        with socket.create_connection(("127.0.0.1", listener.getsockname()[1])) as conn:
            assert Client(conn).ask(b"D") == b"OK"
        server.join(timeout=20)
        assert not server.is_alive()


def test_the_listening_line_is_printed_once_for_every_gdb():
    server = subprocess.Popen([sys.executable, "-m", "emu.tools.cli", "debug", bpf_prog("scratch.S"), "--entry",
                               "arena_arg_unpopulated", "--gdb", "0"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", server.stdout.readline()).group(1))
        for last in (b"D", b"D", b"k"):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
                assert Client(conn).ask(last) == b"OK"
        out, _ = server.communicate(timeout=30)
    finally:
        server.kill()
    assert (server.returncode, out) == (0, "")


# -- the real gdb --------------------------------------------------------------

needs_gdb = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed (.ci/run installs it)")


def _gdb_against(server_args: list[str], *commands: str) -> str:
    server = subprocess.Popen([sys.executable, "-m", "emu.tools.cli", "debug", *server_args, "--gdb", "0", "--once"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", server.stdout.readline()).group(1))
        args = ["gdb", "-nx", "-batch", "-ex", f"target remote 127.0.0.1:{port}"]
        for cmd in commands:
            args += ["-ex", cmd]
        gdb = subprocess.run(args, capture_output=True, text=True, timeout=60)
        server.wait(timeout=30)
    finally:
        server.kill()
    return gdb.stdout + gdb.stderr


@needs_gdb
def test_gdb_shows_cr2_at_a_fault_stop():
    out = _gdb_against([bpf_prog("scratch.S"), "--entry", "arena_arg_unpopulated"], "continue",
                       "info registers cr2", "p/x $cr2", "info registers cr0")
    assert "Program received signal SIGSEGV, Segmentation fault." in out
    assert re.search(rf"^cr2\s+{FAULT_ADDRESS:#x}\s", out, re.M), out
    assert f"$1 = {FAULT_ADDRESS:#x}" in out
    assert re.search(r"^cr0\s+0x80050033\s+\[ PE .* PG \]", out, re.M)  # paging on, shown as flags


@needs_gdb
def test_gdb_sees_each_cpu_as_a_thread():
    out = _gdb_against([bpf_prog("smp.S"), "--entry", "h3_alloc", "--cpus", "2", "--entry1", "h3_reader"],
                       "info threads", "thread 2", "stepi", "info threads")
    assert re.search(r"^\* 1\s+Thread 1 \(CPU 0 \(running a call\)\)", out, re.M), out
    assert re.search(r"^  2\s+Thread 2 \(CPU 1 \(running a call\)\)", out, re.M)
    assert re.search(r"^\* 2\s+Thread 2 \(CPU 1 \(running a call\)\) 0xffffffff810000a1 in", out, re.M)
