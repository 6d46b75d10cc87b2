"""A gdb remote-protocol server, on 127.0.0.1 only.

Memory is read and written by virtual address through the machine's page
tables; registers are the amd64 set gdb expects, then the system registers
(cr0, cr2, cr3, cr4, efer) as QEMU's stub shows them, so a fault stop shows
CR2. Each CPU is a thread: gdb's thread N is CPU N-1, as in the debugger's
`thread N`. Every fault stops the target before its handler runs (SIGSEGV);
`monitor CMD` runs any debugger command (`monitor faults 1` tells a fault's
story), and `si`/`c` then run the handler. Ctrl-C interrupts a `continue`.

What comes in is not trusted: a malformed packet gets an E reply, a bad
checksum a NAK, and neither ends the session.
"""

from __future__ import annotations

import re
import select
import socket
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..errors import EmuError
from ..mm.layout import MASK64, PAGE_SIZE
from .debugger import Debugger

SIGINT, SIGTRAP, SIGSEGV = 2, 5, 11
PACKET_SIZE = 0x4000  # advertised as PacketSize: gdb sends no longer packet, and none longer is sent to it
MAX_PAYLOAD = PACKET_SIZE - 4  # what fits between "$" and "#xx"
E_INVALID, E_FAULT = b"E01", b"E14"  # gdbserver's: a packet it cannot parse or act on; EFAULT
MSR_EFER = 0xC0000080
CHUNK = 4096  # bytes read from the socket at a time


class Malformed(Exception):
    """A packet that does not parse: answered E01, and the session goes on."""


# -- registers ------------------------------------------------------------------


@dataclass(frozen=True)
class Reg:
    """A register of the target description and where its value comes from: a CPU register
    (`source`), an MSR, or a constant this machine does not model otherwise (`value`)."""

    name: str
    bits: int
    type: str
    source: str | None = None
    msr: int | None = None
    value: int = 0
    group: str | None = None
    writable: bool = False

    @property
    def size(self) -> int:
        return self.bits // 8

    def read(self, cpu) -> int:
        if self.source is not None:
            return cpu.reg(self.source)
        if self.msr is not None:
            return cpu.uc.msr_read(self.msr)
        return self.value

    def encode(self, cpu) -> bytes:
        return (self.read(cpu) & ((1 << self.bits) - 1)).to_bytes(self.size, "little")

    def xml(self, regnum: int) -> str:
        group = f' group="{self.group}"' if self.group else ""
        return f'<reg name="{self.name}" bitsize="{self.bits}" type="{self.type}" regnum="{regnum}"{group}/>'


def _flags(name: str, size: int, fields: str) -> str:
    """A gdb flags type from "BIT:NAME ..." pairs."""
    bits = "".join(f'<field name="{f}" start="{b}" end="{b}"/>' for b, f in (p.split(":") for p in fields.split()))
    return f'<flags id="{name}" size="{size}">{bits}</flags>'


_GPR_NAMES = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
              "r15")
# gdb's amd64 numbering (features/i386/64bit-core.xml, 64bit-sse.xml): the x87 and SSE state is not
# modelled and reads as zero; cs and ss are the kernel's selectors.
CORE = (*(Reg(n, 64, "data_ptr" if n in ("rbp", "rsp") else "int64", n, writable=True) for n in _GPR_NAMES),
        Reg("rip", 64, "code_ptr", "rip", writable=True),
        Reg("eflags", 32, "i386_eflags", "rflags", writable=True),
        Reg("cs", 32, "int32", value=0x10), Reg("ss", 32, "int32", value=0x18),
        *(Reg(s, 32, "int32") for s in ("ds", "es", "fs", "gs")),
        *(Reg(f"st{i}", 80, "i387_ext") for i in range(8)),
        *(Reg(n, 32, "int", group="float") for n in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff",
                                                     "fop")))
SSE = (*(Reg(f"xmm{i}", 128, "vec128") for i in range(16)), Reg("mxcsr", 32, "i386_mxcsr", group="vector"))
# QEMU's control registers (target/i386/gdbstub.c IDX_CTL_*), which gdb lists with the general ones: read-only
# here, the paging set-up is the machine's.
SYS = (Reg("cr0", 64, "i386_cr0", "cr0"), Reg("cr2", 64, "int64", "cr2"),
       Reg("cr3", 64, "int64", "cr3"), Reg("cr4", 64, "i386_cr4", "cr4"),
       Reg("efer", 64, "i386_efer", msr=MSR_EFER))
REGS = CORE + SSE + SYS
G_REGS = len(CORE) + len(SSE)  # what `g` carries; gdb reads the rest with `p`

_CORE_TYPES = _flags("i386_eflags", 4, "0:CF 1: 2:PF 4:AF 6:ZF 7:SF 8:TF 9:IF 10:DF 11:OF 14:NT 16:RF 17:VM "
                                       "18:AC 19:VIF 20:VIP 21:ID")
_SSE_TYPES = ('<vector id="v4f" type="ieee_single" count="4"/><vector id="v2d" type="ieee_double" count="2"/>'
              '<vector id="v16i8" type="int8" count="16"/><vector id="v8i16" type="int16" count="8"/>'
              '<vector id="v4i32" type="int32" count="4"/><vector id="v2i64" type="int64" count="2"/>'
              '<union id="vec128"><field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>'
              '<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>'
              '<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>'
              '<field name="uint128" type="uint128"/></union>'
              + _flags("i386_mxcsr", 4, "0:IE 1:DE 2:ZE 3:OE 4:UE 5:PE 6:DAZ 7:IM 8:DM 9:ZM 10:OM 11:UM 12:PM 15:FZ"))
_SYS_TYPES = (_flags("i386_cr0", 8, "0:PE 1:MP 2:EM 3:TS 4:ET 5:NE 16:WP 18:AM 29:NW 30:CD 31:PG")
              + _flags("i386_cr4", 8, "0:VME 1:PVI 2:TSD 3:DE 4:PSE 5:PAE 6:MCE 7:PGE 8:PCE 9:OSFXSR 10:OSXMMEXCPT "
                                      "11:UMIP 12:LA57 13:VMXE 14:SMXE 16:FSGSBASE 17:PCIDE 18:OSXSAVE 20:SMEP "
                                      "21:SMAP 22:PKE")
              + _flags("i386_efer", 8, "0:SCE 8:LME 10:LMA 11:NXE 12:SVME 13:LMSLE 14:FFXSR 15:TCE"))


def _target_xml() -> bytes:
    out, num = [], 0
    for name, types, regs in (("org.gnu.gdb.i386.core", _CORE_TYPES, CORE), ("org.gnu.gdb.i386.sse", _SSE_TYPES, SSE),
                              ("org.arena-emu.i386.sys", _SYS_TYPES, SYS)):
        out.append(f'<feature name="{name}">{types}{"".join(r.xml(num + i) for i, r in enumerate(regs))}</feature>')
        num += len(regs)
    return ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0">'
            f'<architecture>i386:x86-64</architecture>{"".join(out)}</target>').encode()


TARGET_XML = _target_xml()


# -- framing --------------------------------------------------------------------


def checksum(data: bytes | bytearray) -> bytes:
    return b"%02x" % (sum(data) & 0xFF)


def frame(data: bytes) -> bytes:
    return b"$" + data + b"#" + checksum(data)


def escape(data: bytes) -> bytes:
    """Binary data in a reply: `$`, `#`, `}` and `*` go as `}` and the byte xor 0x20."""
    return re.sub(rb"[$#}*]", lambda m: b"}" + bytes([m.group()[0] ^ 0x20]), data)


@dataclass(frozen=True)
class Packet:
    """One packet as it came; `intact` when its checksum matches its data."""

    data: bytes
    intact: bool = True


INTERRUPT = Packet(b"\x03")  # Ctrl-C, sent outside any packet


class PacketReader:
    """Frames packets out of the bytes as they arrive. Each byte is looked at once; between packets
    anything but `$` and Ctrl-C is skipped (acks, garbage), and a packet longer than PACKET_SIZE,
    which gdb never sends, is dropped, so no input makes the buffer grow past that."""

    _BETWEEN = re.compile(rb"[$\x03]")
    _INSIDE = re.compile(rb"[$#]")

    def __init__(self):
        self.packets: deque[Packet] = deque()
        self._data: bytearray | None = None  # the packet being read; None between packets
        self._sum: bytes | None = None  # its checksum digits once `#` came

    @property
    def buffered(self) -> int:
        """Bytes held for a packet not complete yet."""
        return len(self._data or b"")

    def feed(self, chunk: bytes) -> None:
        pos = 0
        while pos < len(chunk):
            if self._data is None:
                m = self._BETWEEN.search(chunk, pos)
                if m is None:
                    return
                pos = m.end()
                if m.group() == b"\x03":
                    self.packets.append(INTERRUPT)
                else:
                    self._data, self._sum = bytearray(), None
            elif self._sum is None:
                m = self._INSIDE.search(chunk, pos)
                end = len(chunk) if m is None else m.start()
                if len(self._data) + end - pos > PACKET_SIZE:
                    self._data, pos = None, end  # skipped from here to the next `$`
                    continue
                self._data += chunk[pos:end]
                if m is None:
                    return
                pos = m.end()
                if m.group() == b"$":
                    self._data = bytearray()  # a packet cut short: the new one starts here
                else:
                    self._sum = b""
            else:
                take = chunk[pos:pos + 2 - len(self._sum)]
                self._sum += take
                pos += len(take)
                if len(self._sum) == 2:
                    self.packets.append(Packet(bytes(self._data), self._sum.lower() == checksum(self._data)))
                    self._data = None


# -- parsing --------------------------------------------------------------------

_HEX = re.compile(rb"[0-9a-fA-F]+")
_BREAKPOINT = re.compile(rb"([0-4]),([0-9a-fA-F]+),([0-9a-fA-F]+)(?:;.*)?", re.S)
_VCONT_ACTION = re.compile(rb"([cs]|[CS][0-9a-fA-F]{2})(?::(.*))?", re.S)
_QUERY = re.compile(rb"([qQ][A-Za-z]*)[:,]?(.*)", re.S)


def _hex(field: bytes, limit: int = MASK64) -> int:
    """A number as gdb writes it: hex digits only (int() would take signs, spaces and `0x`)."""
    if not _HEX.fullmatch(field):
        raise Malformed
    value = int(field, 16)
    if value > limit:
        raise Malformed
    return value


def _hex_bytes(field: bytes) -> bytes:
    if len(field) % 2 or (field and not _HEX.fullmatch(field)):
        raise Malformed
    return bytes.fromhex(field.decode())


def _fields(body: bytes, sep: bytes, n: int) -> list[bytes]:
    parts = body.split(sep)
    if len(parts) != n:
        raise Malformed
    return parts


# -- the session ----------------------------------------------------------------

DETACH, KILL, EOF = "detach", "kill", "eof"  # how a gdb left


class GdbServer:
    """One gdb's session over `conn`; the Debugger, and so the target, outlives it."""

    def __init__(self, debugger: Debugger, conn: socket.socket):
        self.d = debugger
        self.conn = conn
        self.reader = PacketReader()
        self.acks = True  # until gdb asks QStartNoAckMode
        self.run_cpu = debugger.current  # the CPU a resume runs when gdb names none
        self.left: str | None = None
        self.d.catches.add("fault")
        self.d.context_on = False

    # -- transport --------------------------------------------------------------

    def _next_packet(self) -> Packet | None:
        while not self.reader.packets:
            chunk = self.conn.recv(CHUNK)
            if not chunk:
                return None
            self.reader.feed(chunk)
        return self.reader.packets.popleft()

    def _send(self, data: bytes) -> None:
        self.conn.sendall(frame(data))

    def _console(self, text: str) -> None:
        """Text gdb prints as it comes (`O` packets), as a command's output does on a terminal."""
        for i in range(0, len(text), 512):
            self._send(b"O" + text[i:i + 512].encode().hex().encode())

    def _interrupt_pending(self) -> bool:
        """Asked between slices of a `continue`: Ctrl-C came, or gdb went away."""
        if select.select([self.conn], [], [], 0)[0]:
            chunk = self.conn.recv(CHUNK)
            if not chunk:
                return True
            self.reader.feed(chunk)
        for p in self.reader.packets:
            if p is INTERRUPT:
                self.reader.packets.remove(p)
                return True
        return False

    def serve(self) -> str:
        """Answer packets until gdb leaves; return how it left: DETACH, KILL or EOF."""
        try:
            while self.left is None:
                packet = self._next_packet()
                if packet is None:
                    self.left = EOF
                elif packet is INTERRUPT:
                    continue  # nothing runs between packets
                elif not packet.intact and self.acks:
                    self.conn.sendall(b"-")  # gdb sends it again
                else:  # without acks gdb cannot send it again: taken as it came, as gdbserver does
                    if self.acks:
                        self.conn.sendall(b"+")
                    self.handle(packet.data)
        except OSError:  # the connection broke
            self.left = EOF
        return self.left

    def handle(self, data: bytes) -> None:
        """Answer one packet's data: E01 when it does not parse, E14 for memory that is not there."""
        try:
            reply = self._answer(data)
        except Malformed:
            reply = E_INVALID
        self._send(reply)

    def _answer(self, data: bytes) -> bytes:
        kind = data[:1]
        if kind in (b"q", b"Q"):
            m = _QUERY.fullmatch(data)
            assert m is not None  # it matches every q and Q packet
            name = self._QUERIES.get(m.group(1))
            return getattr(self, name)(m.group(2)) if name else b""
        if data.startswith(b"vCont?"):
            return b"vCont;c;C;s;S"
        if data.startswith(b"vCont;"):
            return self._vcont(data[5:])
        name = self._COMMANDS.get(kind)
        return getattr(self, name)(data[1:]) if name else b""

    _QUERIES = {b"qSupported": "_supported", b"QStartNoAckMode": "_no_ack", b"qXfer": "_xfer", b"qRcmd": "_monitor",
                b"qAttached": "_attached", b"qC": "_current_thread", b"qfThreadInfo": "_first_threads",
                b"qsThreadInfo": "_more_threads", b"qThreadExtraInfo": "_thread_info"}
    _COMMANDS = {b"?": "_why", b"g": "_read_registers", b"p": "_read_register", b"P": "_write_register",
                 b"m": "_read_memory", b"M": "_write_memory", b"Z": "_insert", b"z": "_remove", b"s": "_step",
                 b"S": "_step_signal", b"c": "_continue", b"C": "_continue_signal", b"H": "_select_thread",
                 b"T": "_thread_alive", b"D": "_detach", b"k": "_kill"}

    # -- queries ----------------------------------------------------------------

    def _supported(self, _arg: bytes) -> bytes:
        return b"PacketSize=%x;qXfer:features:read+;QStartNoAckMode+" % PACKET_SIZE

    def _no_ack(self, _arg: bytes) -> bytes:
        self.acks = False  # this packet was acknowledged already; from the next one on, none is
        return b"OK"

    def _xfer(self, arg: bytes) -> bytes:
        obj, _, rest = arg.partition(b":")
        op, _, rest = rest.partition(b":")
        if (obj, op) != (b"features", b"read"):
            return b""
        annex, sep, span = rest.rpartition(b":")
        if not sep or annex != b"target.xml":
            raise Malformed
        off, length = (_hex(f) for f in _fields(span, b",", 2))
        chunk = TARGET_XML[off:off + min(length, (MAX_PAYLOAD - 1) // 2)]  # escaped, each byte may take two
        return (b"l" if off + len(chunk) >= len(TARGET_XML) else b"m") + escape(chunk)

    def _monitor(self, arg: bytes) -> bytes:
        try:
            line = _hex_bytes(arg).decode()
        except UnicodeDecodeError:
            raise Malformed from None
        self._console(self.d.execute(line) + "\n")
        return b"OK"

    def _attached(self, _arg: bytes) -> bytes:
        return b"1"

    # -- threads: one per CPU ---------------------------------------------------

    def _cpu(self, field: bytes) -> int | None:
        """The CPU of a thread id: N is CPU N-1; 0 (any) and -1 (all) name none (None)."""
        if field in (b"0", b"-1"):
            return None
        n = _hex(field)
        if not 1 <= n <= len(self.d.m.cpus):
            raise Malformed
        return n - 1

    def _one_cpu(self, field: bytes) -> int:
        cpu = self._cpu(field)
        if cpu is None:
            raise Malformed
        return cpu

    def _current_thread(self, _arg: bytes) -> bytes:
        return b"QC%x" % (self.d.current + 1)

    def _first_threads(self, _arg: bytes) -> bytes:
        return b"m" + b",".join(b"%x" % (c.index + 1) for c in self.d.m.cpus)

    def _more_threads(self, _arg: bytes) -> bytes:
        return b"l"

    def _thread_info(self, arg: bytes) -> bytes:
        cpu = self._one_cpu(arg)
        result = self.d.m.results.get(cpu)
        state = "running a call" if cpu in self.d.m.running_cpus() else (result.status if result else "idle")
        return f"CPU {cpu} ({state})".encode().hex().encode()

    def _select_thread(self, body: bytes) -> bytes:
        """Hg picks the CPU registers are read from: the debugger's current one, set as its `cpu N`
        does; Hc the one a resume runs. A stop reply names its thread, which both sides then take
        as Hg's."""
        op = body[:1]
        if op not in (b"g", b"c"):
            raise Malformed
        cpu = self._cpu(body[1:])
        if cpu is not None and op == b"g":
            self.d.current = cpu
        elif cpu is not None:
            self.run_cpu = cpu
        return b"OK"

    def _thread_alive(self, body: bytes) -> bytes:
        self._one_cpu(body)
        return b"OK"

    # -- registers and memory ---------------------------------------------------

    def _read_registers(self, _body: bytes) -> bytes:
        return b"".join(r.encode(self.d.cpu) for r in REGS[:G_REGS]).hex().encode()

    def _reg(self, field: bytes) -> Reg:
        n = _hex(field)
        if n >= len(REGS):
            raise Malformed
        return REGS[n]

    def _read_register(self, body: bytes) -> bytes:
        return self._reg(body).encode(self.d.cpu).hex().encode()

    def _write_register(self, body: bytes) -> bytes:
        num, sep, value = body.partition(b"=")
        reg = self._reg(num)
        raw = _hex_bytes(value)
        if not sep or len(raw) != reg.size or not reg.writable:
            raise Malformed
        self.d.cpu.set_reg(reg.source, int.from_bytes(raw, "little"))
        return b"OK"

    def _read_memory(self, body: bytes) -> bytes:
        """As much as fits in a packet and can be read from `addr` on; gdb asks again for the rest."""
        addr, length = (_hex(f) for f in _fields(body, b",", 2))
        want = min(length, MAX_PAYLOAD // 2)
        data = b""
        while len(data) < want:
            va = addr + len(data)
            try:
                data += self.d.m.read(va, min(want - len(data), PAGE_SIZE - va % PAGE_SIZE))
            except EmuError:
                break
        return data.hex().encode() if data or not want else E_FAULT

    def _write_memory(self, body: bytes) -> bytes:
        where, sep, hex_data = body.partition(b":")
        addr, length = (_hex(f) for f in _fields(where, b",", 2))
        data = _hex_bytes(hex_data)
        if not sep or len(data) != length:
            raise Malformed
        try:
            self.d.m.write(addr, data)
        except EmuError:
            return E_FAULT
        return b"OK"

    # -- breakpoints ------------------------------------------------------------

    def _breakpoint_at(self, body: bytes) -> int | None:
        """The address of a Z/z packet for a breakpoint; None for a watchpoint kind, which this
        server leaves to gdb's software watchpoints."""
        m = _BREAKPOINT.fullmatch(body)
        if not m:
            raise Malformed
        addr = _hex(m.group(2))
        return addr if m.group(1) in (b"0", b"1") else None

    def _breakpoints(self, addr: int) -> list:
        return [b for b in self.d.breakpoints.values() if b.addr == addr and b.kind == "breakpoint"]

    def _insert(self, body: bytes) -> bytes:
        addr = self._breakpoint_at(body)
        if addr is None:
            return b""
        if not self._breakpoints(addr):  # gdb may insert one twice
            self.d.execute(f"break *{addr:#x}")
        return b"OK"

    def _remove(self, body: bytes) -> bytes:
        addr = self._breakpoint_at(body)
        if addr is None:
            return b""
        for bp in self._breakpoints(addr):
            self.d._delete(bp.num)
        return b"OK"

    # -- running ----------------------------------------------------------------

    def _held_fault(self) -> bool:
        """The current CPU stopped at a fault before its handler."""
        return self.d.running and self.d.m.executor.held(self.d.current) is not None

    def _stop_reply(self) -> bytes:
        d = self.d
        if not d.m.running_cpus():
            result = d.result
            return b"W%02x" % ((result.ret or 0) & 0xFF) if result.status == "returned" else b"X%02x" % SIGSEGV
        sig = SIGSEGV if self._held_fault() else SIGINT if d._interrupted else SIGTRAP
        if len(d.m.cpus) == 1:
            return b"S%02x" % sig
        return b"T%02xthread:%x;" % (sig, d.current + 1)

    def _why(self, _body: bytes) -> bytes:
        return self._stop_reply()

    def _resume(self, addr: bytes, step: bool, cpu: int | None = None) -> bytes:
        """Run one CPU from `addr` (hex; empty: where it is): `cpu` when gdb names it, else the last
        to stop (or Hc's), else the first still in its call. A named CPU with no call does not run
        (E01); when no CPU has one, the process has exited."""
        start = _hex(addr) if addr else None
        d = self.d
        running = d.m.running_cpus()
        if not running:
            return self._stop_reply()
        if cpu is None:
            cpu = self.run_cpu if self.run_cpu in running else running[0]
        if cpu not in running:
            return E_INVALID
        d.current = self.run_cpu = cpu
        if start is not None:
            d.cpu.set_reg("rip", start)
        lines = d._run(1 if step else None, interrupted=self._interrupt_pending)
        if not d.running and d.m.running_cpus():
            self._console(lines[-1] + "\n")  # this CPU's call ended; the process goes on
        return self._stop_reply()

    def _with_signal(self, body: bytes, step: bool) -> bytes:
        """C/S: the signal is ignored; a held fault's handler runs either way, as its delivery."""
        sig, _, addr = body.partition(b";")
        if len(sig) != 2:
            raise Malformed
        _hex(sig)
        return self._resume(addr, step)

    def _step(self, body: bytes) -> bytes:
        return self._resume(body, step=True)

    def _step_signal(self, body: bytes) -> bytes:
        return self._with_signal(body, step=True)

    def _continue(self, body: bytes) -> bytes:
        return self._resume(body, step=False)

    def _continue_signal(self, body: bytes) -> bytes:
        return self._with_signal(body, step=False)

    def _vcont(self, body: bytes) -> bytes:
        """vCont;ACTION[:TID]...: the first action naming a thread runs that CPU, else the first action
        runs the one _resume picks; the others stay stopped, as the debugger runs one CPU at a time."""
        actions = []
        for part in body.split(b";")[1:]:
            m = _VCONT_ACTION.fullmatch(part)
            if not m:
                raise Malformed
            actions.append((m.group(1)[:1], None if m.group(2) is None else self._cpu(m.group(2))))
        if not actions:
            raise Malformed
        kind, cpu = next((a for a in actions if a[1] is not None), actions[0])
        return self._resume(b"", kind in (b"s", b"S"), cpu)

    def _detach(self, _body: bytes) -> bytes:
        self.left = DETACH
        return b"OK"

    def _kill(self, _body: bytes) -> bytes:
        self.left = KILL
        return b"OK"


def serve_on(debugger: Debugger, listener: socket.socket, reattach: bool = True) -> None:
    """Serve the gdbs that connect to `listener`, one after another: one only, or with `reattach`
    every next one, the target left as the last one left it, until one kills it."""
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            left = GdbServer(debugger, conn).serve()
        if not reattach or left == KILL:
            return


def serve(debugger: Debugger, port: int, reattach: bool = True, symbols: Path | None = None) -> int:
    """Listen on 127.0.0.1:PORT (0: any free port) and serve gdb there (see serve_on); say where
    the symbol file for gdb is (on standard error, as gdbserver says what it does)."""
    with socket.create_server(("127.0.0.1", port)) as listener:
        print(f"arena-emu: listening for gdb on 127.0.0.1:{listener.getsockname()[1]} "
              f"(target remote :{listener.getsockname()[1]})", flush=True)
        if symbols is not None:
            print(f"arena-emu: symbols and lines for gdb: symbol-file {symbols}", file=sys.stderr, flush=True)
        serve_on(debugger, listener, reattach)
    return 0
