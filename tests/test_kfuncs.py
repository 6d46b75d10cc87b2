"""Native kfuncs called from guest code with a plain `call`."""

import struct

from emu import Machine
from emu.bpf.arena import EINVAL
from emu.bpf.kfuncs import E2BIG, KFUNCS, KfuncCall, kfunc
from emu.mm.layout import KFUNC_PAGE, PAGE_SIZE

CALLER = r"""
	.text
SYM_FUNC_START(call_kfunc)	/* call_kfunc(fn, a, b, c, d, e): fn(a, b, c, d, e) */
	push	%rbp
	mov	%rsp, %rbp
	mov	%rdi, %rax
	mov	%rsi, %rdi
	mov	%rdx, %rsi
	mov	%rcx, %rdx
	mov	%r8, %rcx
	mov	%r9, %r8
	call	*%rax
	pop	%rbp
	ret
SYM_FUNC_END(call_kfunc)
"""


def setup() -> tuple[Machine, int]:
    m = Machine()
    a = m.create_arena(4)
    m.load_source(CALLER)
    return m, a


def kcall(m: Machine, name: str, *args: int) -> int:
    r = m.call("call_kfunc", m.symbol(name), *args)
    assert r.status == "returned", r
    return r.ret


def test_the_arena_kfuncs_run_the_model_with_the_kernels_argument_order():
    m, a = setup()
    p = kcall(m, "bpf_arena_alloc_pages", a.map_ptr, 0, 2, (1 << 64) - 1, 0)
    assert p == a.user_vm_start and a.rt.runs() == [(2, 4)]
    assert kcall(m, "bpf_arena_reserve_pages", a.map_ptr, p + 2 * PAGE_SIZE, 1) == 0
    assert kcall(m, "bpf_arena_reserve_pages", a.map_ptr, p + 2 * PAGE_SIZE, 1) == (-16) & 0xFFFF_FFFF
    kcall(m, "bpf_arena_free_pages", a.map_ptr, p, 3)
    assert a.rt.runs() == [(0, 4)]


def test_a_pointer_that_is_not_an_arena_map_is_refused():
    m, a = setup()
    assert kcall(m, "bpf_arena_alloc_pages", a.map_ptr + 8, 0, 1, (1 << 64) - 1, 0) == 0
    assert kcall(m, "bpf_arena_reserve_pages", 0, a.user_vm_start, 1) == (-EINVAL) & 0xFFFF_FFFF
    kcall(m, "bpf_arena_free_pages", 0x1234, a.user_vm_start, 1)
    assert a.rt.runs() == [(0, 4)]


def test_an_int_return_is_32_bits_wide_as_a_c_function_leaves_rax():
    m, a = setup()
    assert kcall(m, "bpf_arena_reserve_pages", a.map_ptr, a.user_vm_start + 5 * PAGE_SIZE, 1) == 0xFFFF_FFEA


def test_kfuncs_have_symbols_in_the_kfunc_page():
    m, _ = setup()
    for i, name in enumerate(KFUNCS):
        assert m.symbol(name) == KFUNC_PAGE + 16 * i
        assert m.symbolize(KFUNC_PAGE + 16 * i) == f"{name}+0x0/0x10"


def test_adding_a_kfunc_is_one_decorated_function():
    @kfunc(ret="u64")
    def emu_test_add3(call: KfuncCall, a: int, b: int, c: int) -> int:
        return a + b + c + call.cpu

    try:
        m, _ = setup()
        assert kcall(m, "emu_test_add3", 1, 2, 3) == 6
    finally:
        del KFUNCS["emu_test_add3"]


def test_a_kfunc_that_refuses_ends_the_call_with_an_error():
    @kfunc(ret="void")
    def emu_test_refuse(call: KfuncCall) -> None:
        call.memory.read(0x1000, 1)

    try:
        m, _ = setup()
        r = m.call("call_kfunc", m.symbol("emu_test_refuse"))
        assert (r.status, r.error) == ("error", "emu_test_refuse: cannot access memory at address 0x1000")
    finally:
        del KFUNCS["emu_test_refuse"]


def test_the_number_iterator_as_bpf_iter_c_runs_it():
    """bpf_iter_num_new/next/destroy on an 8-byte iterator (int cur, int end): next yields a pointer to the
    iterator's own cur, start first, then NULL from the end on; bad ranges yield nothing at all."""
    m, _ = setup()
    it = m.bpf.vmalloc.vmalloc(8)

    def state() -> tuple[int, int]:
        cur, end = struct.unpack("<ii", m.memory.read(it, 8))
        return cur, end

    assert kcall(m, "bpf_iter_num_new", it, -2 & 0xFFFF_FFFF, 1) == 0 and state() == (-3, 1)
    seen = []
    while (p := kcall(m, "bpf_iter_num_next", it)) != 0:
        assert p == it
        seen.append(state()[0])
    assert seen == [-2, -1, 0] and state() == (0, 0)
    assert kcall(m, "bpf_iter_num_next", it) == 0  # stays at the end
    assert kcall(m, "bpf_iter_num_new", it, 5, 4) == -EINVAL & 0xFFFF_FFFF and state() == (0, 0)
    assert kcall(m, "bpf_iter_num_new", it, 0, (1 << 23) + 1) == -E2BIG & 0xFFFF_FFFF and state() == (0, 0)
    assert kcall(m, "bpf_iter_num_new", it, 0, 1 << 23) == 0 and state() == (-1, 1 << 23)  # BPF_MAX_LOOPS: allowed
    kcall(m, "bpf_iter_num_destroy", it)
    assert state() == (-1, 0) and kcall(m, "bpf_iter_num_next", it) == 0
    # from INT_MIN: start - 1 wraps to INT_MAX, and the first next wraps back to INT_MIN
    assert kcall(m, "bpf_iter_num_new", it, 1 << 31, (1 << 31) + 2) == 0 and state() == (2**31 - 1, -2**31 + 2)
    assert kcall(m, "bpf_iter_num_next", it) == it and state()[0] == -2**31


def test_trace_vprintk_takes_its_arguments_from_an_array():
    m, _ = setup()
    fmt, args = m.bpf.vmalloc.vmalloc(64), m.bpf.vmalloc.vmalloc(128)
    m.memory.write(fmt, b"%d-%d-%d-%d\0")
    m.memory.write(args, struct.pack("<4Q", 1, 2, 3, 4))
    vprintk = m.symbol("bpf_trace_vprintk")
    assert kcall(m, "call_kfunc", vprintk, fmt, 12, args, 32) == 7
    assert m.bpf.trace_pipe == ["arena-emu-1 [000] bpf_trace_printk: 1-2-3-4"]
    for data_len in (12, 13 * 8):  # not a multiple of 8; more than MAX_BPRINTF_VARARGS
        assert kcall(m, "call_kfunc", vprintk, fmt, 12, args, data_len) == -EINVAL & 0xFFFF_FFFF
