"""Native kfuncs: kernel functions implemented in Python, called from guest code with `call`.

Each kfunc gets a 16-byte slot holding a `ret` in the machine's kfunc page; a
code hook bounded to that page runs the Python body when a CPU reaches the
slot, puts the result in RAX, and lets the `ret` return to the caller. Guest
code elsewhere never leaves the compiled core. Adding a kfunc is one
decorated function: its parameters after `call` are the argument registers in
order, and `ret` says how wide its C return type is. A kfunc that is a
generator yields the names of the points where a scheduler may preempt it.
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..kernel.kallsyms import Kallsyms, Symbol
from ..mm.layout import KFUNC_PAGE, PAGE_SIZE
from ..mm.memory import KernelMemory
from ..mm.physmem import FrameKind
from ..x86.pgtable import PAGE_KERNEL_ROX
from .arena import Arena
from .stream import (
    BPF_STDERR,
    BPF_STDOUT,
    EINVAL,
    ENOENT,
    MAX_BPRINTF_BUF,
    MAX_BPRINTF_VARARGS,
    FormatError,
    bstr_printf,
)

if TYPE_CHECKING:
    from .core import BpfProg
    from .syscall import BpfSubsystem

KFUNC_SLOT = 16
_U32 = 0xFFFF_FFFF


@dataclass(frozen=True)
class KfuncCall:
    """What a native kfunc can see: the BPF subsystem, kernel memory, the calling CPU, and who called."""

    bpf: BpfSubsystem
    memory: KernelMemory
    cpu: int
    return_address: int

    @property
    def prog(self) -> BpfProg | None:
        """The BPF program the call came from, if any (the verifier's aux__prog)."""
        return self.bpf.progs.bpf_prog_ksym_find(self.return_address)

    def arena(self, p__map: int) -> Arena | None:
        """The arena a map pointer names; None when it is not an arena map (map_type check)."""
        bpf_map = self.bpf.maps.get(p__map)
        return bpf_map if isinstance(bpf_map, Arena) else None


# A native body returns R0 (None: void), or is a generator yielding its preemption points.
KfuncBody = Callable[..., int | Iterator[str] | None]


@dataclass(frozen=True)
class NativeKfunc:
    name: str
    body: KfuncBody
    nargs: int
    ret: str  # "void", "int" (32-bit, sign bit in bit 31) or "u64" (pointers and 64-bit values)

    def result(self, value: int | None) -> int | None:
        """The value RAX holds afterwards, as a C function of this return type leaves it."""
        if self.ret == "void" or value is None:
            return None
        return value & _U32 if self.ret == "int" else value & 0xFFFF_FFFF_FFFF_FFFF


KFUNCS: dict[str, NativeKfunc] = {}


def kfunc(ret: str) -> Callable[[KfuncBody], KfuncBody]:
    def register(body: KfuncBody) -> KfuncBody:
        nargs = len(inspect.signature(body).parameters) - 1
        KFUNCS[body.__name__] = NativeKfunc(body.__name__, body, nargs, ret)
        return body
    return register


class ProgramExit(Exception):  # noqa: N818 (a control transfer, as bpf_throw() is, not an error)
    """Raised by a native function to end the whole call with `value` in R0, as the conformance
    suite's `unwind` helper (and the kernel's bpf_throw()) leave a program from any depth."""

    def __init__(self, value: int):
        super().__init__(value)
        self.value = value


def map_kfunc_page(memory: KernelMemory, kallsyms: Kallsyms, natives: list[NativeKfunc]) -> dict[int, NativeKfunc]:
    """One `ret` per native function, KFUNC_SLOT bytes apart, int3 between them; the slot
    addresses are what kallsyms names them by and what guest code (and the JIT) calls."""
    code = bytearray(b"\xcc" * PAGE_SIZE)
    at = {}
    for i, k in enumerate(natives):
        addr = KFUNC_PAGE + i * KFUNC_SLOT
        code[i * KFUNC_SLOT] = 0xC3
        at[addr] = k
        kallsyms.add(Symbol(k.name, addr, "text", True, "<native>"))
    memory.install(KFUNC_PAGE, bytes(code), PAGE_KERNEL_ROX, FrameKind.TEXT)
    kallsyms.add_section(KFUNC_PAGE, KFUNC_PAGE + len(natives) * KFUNC_SLOT)
    return at


def _s32(v: int) -> int:
    v &= _U32
    return v - (1 << 32) if v >> 31 else v


# -- kernel/bpf/arena.c ---------------------------------------------------------

@kfunc(ret="u64")
def bpf_arena_alloc_pages(call: KfuncCall, p__map: int, addr__ign: int, page_cnt: int, node_id: int,
                          flags: int) -> int:
    arena = call.arena(p__map)
    if arena is None:
        return 0
    return arena.alloc_pages(addr__ign, page_cnt & _U32, _s32(node_id), flags)


@kfunc(ret="void")
def bpf_arena_free_pages(call: KfuncCall, p__map: int, ptr__ign: int, page_cnt: int) -> Iterator[str]:
    """A generator: a scheduler may preempt it between returning the range and the TLB flush."""
    arena = call.arena(p__map)
    if arena is not None:
        yield from arena.free_pages_steps(ptr__ign, page_cnt & _U32)


@kfunc(ret="int")
def bpf_arena_reserve_pages(call: KfuncCall, p__map: int, ptr__ign: int, page_cnt: int) -> int:
    arena = call.arena(p__map)
    if arena is None:
        return -EINVAL
    return arena.reserve_pages(ptr__ign, page_cnt & _U32)


@kfunc(ret="u64")
def bpf_arena_map_kern_vm_start(call: KfuncCall, p__map: int) -> int:
    """bpf_arena_map_kern_vm_start() (53cc12a2dc88): kernel code's way to the arena's base."""
    arena = call.arena(p__map)
    return arena.kern_vm_start if arena is not None else 0


# -- kernel/bpf/stream.c --------------------------------------------------------

@kfunc(ret="int")
def bpf_stream_vprintk(call: KfuncCall, stream_id: int, fmt__str: int, args: int, len__sz: int,
                       aux__prog: int) -> int:
    """bpf_stream_vprintk(): the program comes from the return address, as the verifier's
    hidden aux__prog argument would name it."""
    prog = call.prog
    stream_id = _s32(stream_id)
    if prog is None or stream_id not in (BPF_STDOUT, BPF_STDERR):
        return -ENOENT
    len__sz &= _U32
    if len__sz & 7 or len__sz > MAX_BPRINTF_VARARGS * 8 or (len__sz and not args):
        return -EINVAL
    m = call.memory
    fmt = m.read_cstring(fmt__str, MAX_BPRINTF_BUF)
    values = [m.read_u64(args + 8 * i) for i in range(len__sz // 8)] if len__sz else []
    if fmt is None:
        return -EINVAL
    try:
        text = bstr_printf(fmt, values, lambda p: m.read_cstring(p, MAX_BPRINTF_BUF))
    except FormatError:
        return -EINVAL
    return prog.main_prog.streams[stream_id].bpf_stream_push_str(text.encode()[:MAX_BPRINTF_BUF - 1])


# -- kernel/bpf/bpf_iter.c: the open-coded number iterator behind bpf_for() and bpf_repeat() -------------------

BPF_MAX_LOOPS = 8 * 1024 * 1024
E2BIG = 7
_ITER_NUM = struct.Struct("<ii")  # struct bpf_iter_num_kern: int cur, int end (in the program's 8-byte iterator)


@kfunc(ret="int")
def bpf_iter_num_new(call: KfuncCall, it: int, start: int, end: int) -> int:
    """bpf_iter_num_new(): the next call yields start first; an empty or too long range yields nothing."""
    start, end = _s32(start), _s32(end)
    if start > end:
        call.memory.write(it, _ITER_NUM.pack(0, 0))
        return -EINVAL
    if end - start > BPF_MAX_LOOPS:
        call.memory.write(it, _ITER_NUM.pack(0, 0))
        return -E2BIG
    call.memory.write(it, _ITER_NUM.pack(_s32(start - 1), end))
    return 0


@kfunc(ret="u64")
def bpf_iter_num_next(call: KfuncCall, it: int) -> int:
    """bpf_iter_num_next(): a pointer to the next number, kept in the iterator itself, or NULL at the end
    (which also empties the iterator, so later calls stay NULL)."""
    cur, end = _ITER_NUM.unpack(call.memory.read(it, _ITER_NUM.size))
    nxt = _s32(cur + 1)  # an int that wraps, as the kernel's (built with -fno-strict-overflow) does
    if nxt >= end:
        call.memory.write(it, _ITER_NUM.pack(0, 0))
        return 0
    call.memory.write(it, _ITER_NUM.pack(nxt, end))
    return it


@kfunc(ret="void")
def bpf_iter_num_destroy(call: KfuncCall, it: int) -> None:
    cur, _ = _ITER_NUM.unpack(call.memory.read(it, _ITER_NUM.size))
    call.memory.write(it, _ITER_NUM.pack(cur, 0))
