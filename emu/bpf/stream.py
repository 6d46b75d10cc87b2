"""BPF streams: kernel/bpf/stream.c.

Each program has a stdout and a stderr stream. Writers push whole elements;
the reader consumes bytes in order and may stop mid-element. A stream holds
less than BPF_STREAM_MAX_CAPACITY bytes, counted per element until the reader
has consumed all of it. Kernel-side reports are staged and committed at once,
so a report is in the stream whole or not at all.

Accounting follows the selftests (`stream_exhaust`, `test_stream_syscall`):
a printk pushes its text without a terminating NUL.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

BPF_STDOUT, BPF_STDERR = 1, 2
STREAM_NAMES = {BPF_STDOUT: "stdout", BPF_STDERR: "stderr"}
BPF_STREAM_MAX_CAPACITY = 100_000
BPF_PROG_STREAM_ERROR_CNT = 512
MAX_BPRINTF_BUF = 512
MAX_BPRINTF_VARARGS = 12

ENOENT, EINVAL, ENOSPC, EFAULT = 2, 22, 28, 14


@dataclass
class BpfStream:
    capacity: int = 0  # bytes pushed and not yet fully consumed
    _elems: deque[bytes] = field(default_factory=deque)
    _consumed: int = 0  # bytes of the first element already read

    def bpf_stream_consume_capacity(self, length: int) -> int:
        """bpf_stream_consume_capacity(): 0, or -ENOSPC when the total would reach the maximum."""
        if self.capacity >= BPF_STREAM_MAX_CAPACITY or self.capacity + length >= BPF_STREAM_MAX_CAPACITY:
            return -ENOSPC
        self.capacity += length
        return 0

    def bpf_stream_push_str(self, data: bytes) -> int:
        ret = self.bpf_stream_consume_capacity(len(data))
        if ret == 0:
            self._elems.append(data)
        return ret

    def push_staged(self, elems: list[bytes]) -> int:
        """bpf_stream_stage_commit(): the capacity of the whole report at once, then its elements."""
        ret = self.bpf_stream_consume_capacity(sum(map(len, elems)))
        if ret == 0:
            self._elems.extend(elems)
        return ret

    def bpf_stream_read(self, length: int) -> bytes:
        """bpf_stream_read(): up to `length` bytes, consumed; an element's capacity is released
        once it has been read to its end."""
        out = bytearray()
        while self._elems and len(out) < length:
            elem = self._elems[0]
            take = min(length - len(out), len(elem) - self._consumed)
            out += elem[self._consumed:self._consumed + take]
            self._consumed += take
            if self._consumed == len(elem):
                self._elems.popleft()
                self.capacity -= len(elem)
                self._consumed = 0
        return bytes(out)

    def peek(self) -> bytes:
        """What a reader would get, without consuming it (the debugger's view)."""
        return b"".join(self._elems)[self._consumed:]

    def pending(self) -> int:
        """Bytes a reader would still get."""
        return sum(map(len, self._elems)) - self._consumed


@dataclass
class BpfStreamStage:
    """struct bpf_stream_stage: a report built element by element, committed whole."""

    elems: list[bytes] = field(default_factory=list)

    def bpf_stream_printk(self, text: str) -> None:
        self.elems.append(printk_bytes(text))

    @property
    def text(self) -> str:
        return b"".join(self.elems).decode(errors="replace")


def printk_bytes(text: str) -> bytes:
    """What one bpf_stream_printk() of `text` stages: its bytes, cut to the bprintf buffer."""
    return text.encode()[:MAX_BPRINTF_BUF - 1]


class FormatError(ValueError):
    pass


_CONVERSION = re.compile(r"%([-+ #0]*)(\d*)(?:\.(\d+))?(hh|h|ll|l|z)?([diuxXcsp%])")


def bstr_printf(fmt: str, args: list[int], read_str: Callable[[int], str | None]) -> str:
    """The subset of bpf_bprintf_prepare()/bstr_printf() BPF programs use: %d %i %u %x %X %c
    %s %p/%px and %%, with flags, width, precision and h/l/ll/z modifiers. Anything else
    is -EINVAL in the kernel and a FormatError here. %p prints the raw pointer (the
    kernel would hash it)."""
    out, pos, argi = [], 0, 0
    for m in _CONVERSION.finditer(fmt):
        text = fmt[pos:m.start()]
        if "%" in text:
            raise FormatError(f"unsupported conversion in {fmt[pos:]!r}")
        out.append(text)
        pos = m.end()
        flags, width, prec, mod, conv = m.groups()
        if conv == "%":
            out.append("%")
            continue
        if argi >= len(args):
            raise FormatError("more conversions than arguments")
        value = args[argi]
        argi += 1
        bits = {"hh": 8, "h": 16, None: 32}.get(mod, 64)
        if conv == "p":
            if fmt[pos:pos + 1] == "x":
                pos += 1
            out.append(f"0x{value:016x}")
            continue
        if conv == "s":
            s = read_str(value)
            out.append("(efault)" if s is None else s[:int(prec)] if prec else s)
            continue
        value &= (1 << bits) - 1
        if conv in "di" and value >> (bits - 1):
            value -= 1 << bits
        spec = _py_spec(flags, width)
        if conv == "c":
            out.append(f"{chr(value & 0xFF):{_py_spec(flags.replace('0', ''), width)}}")
        elif conv in "xX":
            out.append(format(value, f"{spec}{conv}"))
        else:
            out.append(format(value, f"{spec}d"))
    tail = fmt[pos:]
    if "%" in tail:
        raise FormatError(f"unsupported conversion in {tail!r}")
    out.append(tail)
    return "".join(out)


def _py_spec(flags: str, width: str) -> str:
    """C printf flags and width as a Python format spec: [align][sign][#][0][width]."""
    align = "<" if "-" in flags else ""
    sign = "+" if "+" in flags else " " if " " in flags else ""
    return f"{align}{sign}{'#' if '#' in flags else ''}{'0' if '0' in flags and not align else ''}{width}"
