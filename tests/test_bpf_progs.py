"""The programs in bpf_progs/: what the kernel does with each of their arena faults."""


from emu import Machine
from emu.bpf.stream import BPF_PROG_STREAM_ERROR_CNT, BPF_STDERR, BPF_STDOUT
from emu.corpus import bpf_prog
from emu.mm.layout import PAGE_SIZE

UVM = 0x7F7D_2620_0000  # the default user_vm_start (the kernel's own example)


def loaded(filename: str, policy: str = "scratch") -> Machine:
    m = Machine(policy=policy)
    m.load(bpf_prog(filename))
    return m


def stderr(m: Machine, prog: str) -> str:
    return m.progs.by_name[prog].stream_read(BPF_STDERR).decode()


def test_stream_arena_read_fault_reports_the_exact_user_address_and_reads_zero():
    m = loaded("stream.S")
    r = m.call("stream_arena_read_fault")
    assert (r.status, r.ret) == ("returned", 0)
    [e] = r.faults
    kern = m.arena.kern_vm_start + 0x2620_7FFF
    assert (e.address, e.error_code.access, e.resolution, e.handler, e.action, e.cleared) == (
        kern, "read", "extable", "ex_handler_bpf", "skip", "rax")
    assert e.resume_at == e.rip + 4 and e.retry is None
    assert e.pte_before == e.pte_after == 0
    p = m.progs.by_name["stream_arena_read_fault"]
    assert e.where == f"{p.ksym}+0x1c/0x30"
    assert stderr(m, "stream_arena_read_fault") == (
        f"ERROR: Arena READ access at unmapped address {UVM + 0x7FFF:#x}\n"
        "CPU: 0 UID: 0 PID: 1 Comm: arena-emu\n"
        "Call trace:\n"
        f"{p.ksym}+0x1c/0x30\n"
        "  mov 0x0(%rdi,%r12,1), %eax @ stream.S:21\n"
        "emu_call_return+0x0/0x10\n"
        "\n")
    assert e.stream == f"ERROR: Arena READ access at unmapped address {UVM + 0x7FFF:#x}\n" + \
        e.stream.split("\n", 1)[1]
    assert stderr(m, "stream_arena_read_fault") == ""  # reading consumed it


def test_stream_arena_write_fault_is_a_write_that_clears_nothing():
    m = loaded("stream.S")
    r = m.call("stream_arena_write_fault")
    [e] = r.faults
    assert (r.ret, e.error_code.access, e.cleared, e.action) == (0, "write", None, "skip")
    assert e.resume_at == e.rip + 8
    assert stderr(m, "stream_arena_write_fault").startswith(
        f"ERROR: Arena WRITE access at unmapped address {UVM + 0x7FFF:#x}\nCPU: 0 UID: 0 PID: 1 Comm: arena-emu\n")


def test_a_fault_in_a_subprogram_reports_to_the_main_program_with_both_frames():
    m = loaded("stream.S")
    r = m.call("stream_arena_subprog_fault")
    assert r.ret == 0
    sub, main = m.progs.by_name["subprog"], m.progs.by_name["stream_arena_subprog_fault"]
    assert sub.main_prog is main
    text = stderr(m, "stream_arena_subprog_fault")
    assert text == (
        f"ERROR: Arena WRITE access at unmapped address {(UVM & ~0xFFFF_FFFF) + 0xDEADBEEF:#x}\n"
        "CPU: 0 UID: 0 PID: 1 Comm: arena-emu\n"
        "Call trace:\n"
        f"{sub.ksym}+0x15/0x30\n"
        "  movl $1, 0x0(%rdi,%r12,1) @ stream.S:51\n"
        f"{main.ksym}+0x15/0x19\n"
        "  call subprog @ stream.S:65\n"
        "emu_call_return+0x0/0x10\n"
        "\n")
    assert sub.streams[BPF_STDERR].pending() == 0  # the subprogram's own streams are not used


def test_a_list_built_and_walked_in_the_arena():
    m = loaded("arena_list.S")
    head = m.call("arena_list_build", 20).ret
    assert head == UVM
    assert m.call("arena_list_sum", head).ret == sum(range(1, 21))
    assert m.arena.rt.runs() == [(1, 16)]


def test_a_list_whose_next_pointer_leads_to_an_unallocated_page_ends_there():
    m = loaded("arena_list.S")
    head = m.call("arena_list_build", 3).ret
    m.write_u64(m.arena.kern_addr(head + 16), UVM + 5 * PAGE_SIZE)  # node 1 -> a page no one allocated
    r = m.call("arena_list_sum", head)
    assert r.ret == 1 + 2
    assert [(e.address, e.cleared) for e in r.faults] == [
        (m.arena.kern_vm_start + 0x2620_5008, "rdx"), (m.arena.kern_vm_start + 0x2620_5000, "rbx")]


def test_the_stream_error_limit_stops_reports_after_512():
    m = Machine()
    m.load_source("""
	BPF_ARENA(arena, 1)
	.text
SYM_FUNC_START(fault_n_times)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	xor	%esi, %esi
1:	mov	0x0(%rsi,%r12,1), %rax
	dec	%rdi
	jnz	1b
	pop	%r12
	leave
	ret
SYM_FUNC_END(fault_n_times)
	BPF_PROG(fault_n_times)
""", name="loop.S")
    first = m.call("fault_n_times", 300)
    assert all(e.resolution == "extable" and e.stream for e in first.faults)
    assert stderr(m, "fault_n_times").count("ERROR: Arena READ access") == 300  # and the reader empties it
    second = m.call("fault_n_times", 300)
    reported = [e for e in second.faults if e.stream]
    assert len(reported) == BPF_PROG_STREAM_ERROR_CNT - 300
    assert second.faults[212].stream is None
    assert second.faults[212].steps[-1] == ("bpf_stream_stage: not reported: fault_n_times reached its limit "
                                            "of error reports")
    assert all(e.resolution == "extable" and e.cleared == "rax" for e in second.faults)
    assert stderr(m, "fault_n_times").count("ERROR: Arena READ access") == 212


def test_the_stream_capacity_stops_reports_before_the_error_limit_when_no_one_reads():
    m = Machine()
    m.load(bpf_prog("stream.S"))
    r = m.call("stream_arena_read_fault")
    size = len(r.faults[0].stream.encode())
    p = m.progs.by_name["stream_arena_read_fault"]
    for _ in range(600):
        m.call("stream_arena_read_fault")
    assert p.streams[BPF_STDERR].pending() == (100_000 - 1) // size * size
    assert p.stream_error_cnt == 601


def test_the_stream_capacity_drops_a_whole_report():
    m = Machine()
    m.load(bpf_prog("stream.S"))
    p = m.progs.by_name["stream_arena_read_fault"]
    p.streams[BPF_STDERR].bpf_stream_push_str(b"x" * (100_000 - 100))
    r = m.call("stream_arena_read_fault")
    assert r.faults[0].stream is None
    assert r.faults[0].steps[-1].startswith("bpf_stream_stage: not reported: bpf_stream_stage_commit() = -28")
    assert p.streams[BPF_STDERR].pending() == 100_000 - 100


def test_a_program_prints_to_its_stdout_with_bpf_stream_vprintk():
    m = Machine()
    m.load_source(r"""
	BPF_ARENA(arena, 1)
	.rodata
fmt:	.asciz "pages at %lx, n=%d\n"
	.text
SYM_FUNC_START(say)
	push	%rbp
	mov	%rsp, %rbp
	sub	$16, %rsp
	movabs	$ARENA_USER_VM_START, %rax
	mov	%rax, -16(%rbp)
	movq	$-3, -8(%rbp)
	mov	$1, %edi			/* BPF_STDOUT */
	movabs	$fmt, %rsi
	lea	-16(%rbp), %rdx
	mov	$16, %ecx
	xor	%r8d, %r8d
	call	bpf_stream_vprintk
	leave
	ret
SYM_FUNC_END(say)
	BPF_PROG(say)
""", name="say.S")
    r = m.call("say")
    assert r.ret == 0
    assert m.progs.by_name["say"].stream_read(BPF_STDOUT) == f"pages at {UVM:x}, n=-3\n".encode()
