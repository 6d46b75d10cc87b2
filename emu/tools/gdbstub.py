"""A gdb remote-protocol server for one debugging session, on 127.0.0.1 only.

Memory is read and written by virtual address through the machine's page
tables; registers are the amd64 set gdb expects. Every fault stops the
target before its handler runs (SIGSEGV); `monitor CMD` runs any debugger
command (`monitor faults 1` tells a fault's story), and `si`/`c` then run
the handler. Ctrl-C interrupts a `continue`.
"""

from __future__ import annotations

import select
import socket

from ..errors import EmuError
from .debugger import CommandError, Debugger

SIGINT, SIGTRAP, SIGSEGV = 2, 5, 11

TARGET_XML = ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
              "<target><architecture>i386:x86-64</architecture></target>")

# gdb's amd64 register numbering: 16 GPRs, rip, eflags, 6 segment registers, then x87 and SSE state,
# which this machine does not model (read as zero).
_GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
         "r15", "rip")
_SIZES = [8] * 17 + [4] * 7 + [10] * 8 + [4] * 8 + [16] * 16 + [4]


def checksum(data: bytes) -> bytes:
    return b"%02x" % (sum(data) & 0xFF)


def frame(data: bytes) -> bytes:
    return b"$" + data + b"#" + checksum(data)


class GdbServer:
    def __init__(self, debugger: Debugger, conn: socket.socket):
        self.d = debugger
        self.conn = conn
        self.buf = b""
        self.d.catches.add("fault")
        self.d.context_on = False

    # -- transport --------------------------------------------------------------

    def _read_packet(self) -> bytes | None:
        while True:
            start = self.buf.find(b"$")
            interrupt = self.buf.find(b"\x03")
            if interrupt != -1 and (start == -1 or interrupt < start):
                self.buf = self.buf[interrupt + 1:]
                return b"\x03"
            if start != -1:
                end = self.buf.find(b"#", start)
                if end != -1 and len(self.buf) >= end + 3:
                    data = self.buf[start + 1:end]
                    self.buf = self.buf[end + 3:]
                    self.conn.sendall(b"+")
                    return data
            chunk = self.conn.recv(4096)
            if not chunk:
                return None
            self.buf += chunk

    def _send(self, data: bytes) -> None:
        self.conn.sendall(frame(data))

    def _interrupt_pending(self) -> bool:
        ready, _, _ = select.select([self.conn], [], [], 0)
        if ready:
            chunk = self.conn.recv(4096)
            if not chunk or b"\x03" in chunk:
                return True
            self.buf += chunk
        return False

    # -- target -----------------------------------------------------------------

    def _registers(self) -> bytes:
        out = b""
        for i, size in enumerate(_SIZES):
            out += self._reg_bytes(i, size)
        return out.hex().encode()

    def _reg_bytes(self, i: int, size: int) -> bytes:
        cpu = self.d.cpu
        if i < 17:
            value = cpu.reg(_GPRS[i])
        elif i == 17:
            value = cpu.reg("rflags")
        elif i == 18:
            value = 0x10  # cs: __KERNEL_CS
        elif i == 19:
            value = 0x18  # ss: __KERNEL_DS
        else:
            value = 0
        return (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")

    def _stop_reply(self) -> bytes:
        if self.d.running and self.d.m.executor.held(self.d.current) is not None:
            return b"S%02x" % SIGSEGV
        if not self.d.running:
            result = self.d.result
            return b"W%02x" % ((result.ret or 0) & 0xFF) if result.status == "returned" else b"X%02x" % SIGSEGV
        return b"S%02x" % (SIGINT if self.d._interrupted else SIGTRAP)

    def _resume(self, step: bool) -> bytes:
        if not self.d.running:
            return b"X%02x" % SIGSEGV
        self.d._run(1 if step else None, interrupted=self._interrupt_pending)
        return self._stop_reply()

    def _monitor(self, hex_cmd: bytes) -> None:
        text = self.d.execute(bytes.fromhex(hex_cmd.decode()).decode()) + "\n"
        for i in range(0, len(text), 512):
            self._send(b"O" + text[i:i + 512].encode().hex().encode())
        self._send(b"OK")

    def handle(self, pkt: bytes) -> bool:
        """Answer one packet; False when the session is over."""
        d = self.d
        if pkt == b"\x03":
            return True  # nothing is running between packets
        cmd, body = pkt[:1], pkt[1:]
        if pkt.startswith(b"qSupported"):
            self._send(b"PacketSize=4000;qXfer:features:read+")
        elif pkt.startswith(b"qXfer:features:read:target.xml:"):
            off, length = (int(x, 16) for x in pkt.rsplit(b":", 1)[1].split(b","))
            chunk = TARGET_XML.encode()[off:off + length]
            self._send((b"l" if off + length >= len(TARGET_XML) else b"m") + chunk)
        elif pkt == b"?":
            self._send(self._stop_reply())
        elif pkt == b"g":
            self._send(self._registers())
        elif cmd == b"p":
            n = int(body, 16)
            self._send(self._reg_bytes(n, _SIZES[n]).hex().encode() if n < len(_SIZES) else b"E01")
        elif cmd == b"P":
            n, value = body.split(b"=")
            n = int(n, 16)
            if n < 17:
                d.cpu.set_reg(_GPRS[n], int.from_bytes(bytes.fromhex(value.decode()), "little"))
            self._send(b"OK")
        elif cmd == b"m":
            addr, length = (int(x, 16) for x in body.split(b","))
            try:
                self._send(d.m.read(addr, length).hex().encode())
            except EmuError:
                self._send(b"E14")
        elif cmd == b"M":
            where, data = body.split(b":")
            addr, _length = (int(x, 16) for x in where.split(b","))
            try:
                d.m.write(addr, bytes.fromhex(data.decode()))
                self._send(b"OK")
            except EmuError:
                self._send(b"E14")
        elif cmd in (b"Z", b"z") and body[:2] in (b"0,", b"1,"):
            addr = int(body.split(b",")[1], 16)
            try:
                if cmd == b"Z":
                    d.execute(f"break *{addr:#x}")
                else:
                    for bp in [b for b in d.breakpoints.values() if b.addr == addr and b.kind == "breakpoint"]:
                        d._delete(bp.num)
                self._send(b"OK")
            except CommandError:
                self._send(b"E01")
        elif cmd in (b"s", b"S"):
            self._send(self._resume(step=True))
        elif cmd in (b"c", b"C"):
            self._send(self._resume(step=False))
        elif pkt.startswith(b"qRcmd,"):
            self._monitor(pkt[6:])
        elif pkt == b"qAttached":
            self._send(b"1")
        elif pkt == b"qC":
            self._send(b"QC1")
        elif pkt == b"qfThreadInfo":
            self._send(b"m1")
        elif pkt == b"qsThreadInfo":
            self._send(b"l")
        elif cmd == b"H" or pkt.startswith(b"T"):
            self._send(b"OK")
        elif cmd in (b"D", b"k"):
            self._send(b"OK")
            return False
        else:
            self._send(b"")
        return True

    def serve(self) -> None:
        while True:
            pkt = self._read_packet()
            if pkt is None or not self.handle(pkt):
                return


def serve(debugger: Debugger, port: int) -> int:
    """Listen on 127.0.0.1:PORT (0: any free port), serve one gdb, return when it leaves."""
    with socket.create_server(("127.0.0.1", port)) as listener:
        print(f"arena-emu: listening for gdb on 127.0.0.1:{listener.getsockname()[1]} "
              f"(target remote :{listener.getsockname()[1]})", flush=True)
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            GdbServer(debugger, conn).serve()
    return 0
