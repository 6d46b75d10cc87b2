"""BPF helpers (kernel/bpf/helpers.c and friends): native functions the JIT calls by helper id.

Each is a NativeKfunc like the kfuncs, in the same page, found by the id in a
`call` instruction's imm. What a real kernel takes from the hardware is made
deterministic, so a run can be replayed: the clock advances 1 us per call from
1 s after boot, and the random numbers come from a generator seeded per machine.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from .kfuncs import KfuncCall, NativeKfunc, ProgramExit
from .stream import MAX_BPRINTF_BUF, MAX_BPRINTF_VARARGS, FormatError, bstr_printf

BPF_FUNC_map_lookup_elem, BPF_FUNC_ktime_get_ns, BPF_FUNC_trace_printk = 1, 5, 6
BPF_FUNC_map_update_elem, BPF_FUNC_map_delete_elem = 2, 3
BPF_FUNC_get_prandom_u32, BPF_FUNC_get_smp_processor_id = 7, 8
BPF_FUNC_get_current_pid_tgid, BPF_FUNC_trace_vprintk = 14, 177
EINVAL = 22

HELPERS: dict[int, NativeKfunc] = {}
CONFORMANCE_HELPERS: dict[int, NativeKfunc] = {}  # what bpf_conformance's tests call instead


def _register(table: dict[int, NativeKfunc], helper_id: int, ret: str):
    def register(body: Callable[..., int | None]) -> Callable[..., int | None]:
        table[helper_id] = NativeKfunc(body.__name__, body, len(inspect.signature(body).parameters) - 1, ret)
        return body
    return register


def helper(helper_id: int, ret: str = "u64"):
    return _register(HELPERS, helper_id, ret)


@helper(BPF_FUNC_map_lookup_elem)
def bpf_map_lookup_elem(call: KfuncCall, map: int, key: int) -> int:
    """bpf_map_lookup_elem(): the value's address in the map, or NULL; the key is read where the program points."""
    bpf_map = call.bpf.bpf_map(map)
    return bpf_map.map_lookup_elem(call.memory.read(key, bpf_map.key_size)) if bpf_map is not None else 0


@helper(BPF_FUNC_map_update_elem)
def bpf_map_update_elem(call: KfuncCall, map: int, key: int, value: int, flags: int) -> int:
    """bpf_map_update_elem(): 0 or a negative errno (a long, sign-extended in r0)."""
    bpf_map = call.bpf.bpf_map(map)
    if bpf_map is None:
        return -EINVAL
    m = call.memory
    return bpf_map.map_update_elem(m.read(key, bpf_map.key_size), m.read(value, bpf_map.value_size), flags, call.cpu)


@helper(BPF_FUNC_map_delete_elem)
def bpf_map_delete_elem(call: KfuncCall, map: int, key: int) -> int:
    bpf_map = call.bpf.bpf_map(map)
    if bpf_map is None:
        return -EINVAL
    return bpf_map.map_delete_elem(call.memory.read(key, bpf_map.key_size), call.cpu)


@helper(BPF_FUNC_ktime_get_ns)
def bpf_ktime_get_ns(call: KfuncCall) -> int:
    """ktime_get_mono_fast_ns(): a deterministic clock, 1 us a call."""
    call.bpf.ktime_ns += 1000
    return call.bpf.ktime_ns


@helper(BPF_FUNC_trace_printk, ret="int")
def bpf_trace_printk(call: KfuncCall, fmt: int, fmt_size: int, arg1: int, arg2: int, arg3: int) -> int:
    """bpf_trace_printk(): format with up to three arguments into the trace pipe; the bytes
    written, or -EINVAL for a format it refuses (unterminated, %n, more than three)."""
    return _trace_printk(call, fmt, fmt_size, [arg1, arg2, arg3])


@helper(BPF_FUNC_trace_vprintk, ret="int")
def bpf_trace_vprintk(call: KfuncCall, fmt: int, fmt_size: int, args: int, data_len: int) -> int:
    """bpf_trace_vprintk(): the same with up to MAX_BPRINTF_VARARGS u64 arguments in an array
    (bpf_printk() with more than three); -EINVAL for a length that is not a multiple of 8 or too long."""
    data_len &= 0xFFFF_FFFF
    if data_len & 7 or data_len > MAX_BPRINTF_VARARGS * 8 or (data_len and not args):
        return -EINVAL
    return _trace_printk(call, fmt, fmt_size, [call.memory.read_u64(args + 8 * i) for i in range(data_len // 8)])


def _trace_printk(call: KfuncCall, fmt: int, fmt_size: int, values: list[int]) -> int:
    fmt_size &= 0xFFFF_FFFF
    text = call.memory.read_cstring(fmt, min(fmt_size, MAX_BPRINTF_BUF)) if fmt_size else None
    if text is None or len(text) >= fmt_size:
        return -EINVAL
    try:
        out = bstr_printf(text, values, lambda p: call.memory.read_cstring(p, MAX_BPRINTF_BUF))
    except FormatError:
        return -EINVAL
    call.bpf.trace_printk(call.cpu, out)
    return len(out.encode())


@helper(BPF_FUNC_get_prandom_u32, ret="int")
def bpf_get_prandom_u32(call: KfuncCall) -> int:
    return call.bpf.prandom.getrandbits(32)


@helper(BPF_FUNC_get_smp_processor_id, ret="int")
def bpf_get_smp_processor_id(call: KfuncCall) -> int:
    return call.cpu


@helper(BPF_FUNC_get_current_pid_tgid)
def bpf_get_current_pid_tgid(call: KfuncCall) -> int:
    """bpf_get_current_pid_tgid(): tgid << 32 | pid of the task running the test run (the one the stream
    reports name; single-threaded, so both are its pid)."""
    return call.bpf.pid << 32 | call.bpf.pid


@_register(CONFORMANCE_HELPERS, 5, "u64")
def conformance_unwind(call: KfuncCall, r1: int) -> int:
    """uBPF's test helper `unwind`, helper 5 of the conformance suite: returns r1, and a zero r1
    ends the whole program with 0."""
    if r1 == 0:
        raise ProgramExit(0)
    return r1
