"""Every BPF arena access lands in the 4 GiB + guard window, and every fault there is the extable's."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu import Machine
from emu.bpf.arena import GUARD_SZ, SZ_4G
from emu.bpf.stream import BPF_STDERR
from emu.mm.layout import PAGE_MASK
from emu.x86.decode import disasm_one

UVM = 1 << 32  # user_vm_start with zero low bits: pgoff N is at kern_vm_start + N * 4 KiB
MARK = 0xA5

TEMPLATE = """
	BPF_ARENA(arena, 0x100000, 0x100000000)
	.text
SYM_FUNC_START(p)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
	{access}
	pop	%r12
	leave
	ret
SYM_FUNC_END(p)
	BPF_PROG(p)
"""
ACCESS = {"load": "movzbl {off}(%rdi,%r12,1), %eax", "store": "movb $0xa5, {off}(%rdi,%r12,1)"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(ACCESS)), src=st.integers(0, (1 << 32) - 1),
       off=st.integers(-0x8000, 0x7FFF), allocate=st.booleans())
def test_arena_accesses_stay_in_the_window_and_faults_are_fixed_up(kind, src, off, allocate):
    m = Machine()
    m.load_source(TEMPLATE.format(access=ACCESS[kind].format(off=off)), name="fuzz.S")
    a = m.arena
    target = a.kern_vm_start + src + off
    inside = 0 <= src + off < SZ_4G
    if allocate and inside:
        assert a.alloc_pages(UVM + ((src + off) & PAGE_MASK), 1) != 0
        if kind == "load":
            m.write(target, bytes([MARK]))
    r = m.call("p", src)
    assert r.status == "returned", r
    assert a.kern_vm_start - GUARD_SZ // 2 <= target < a.kern_vm_start + SZ_4G + GUARD_SZ // 2
    if allocate and inside:
        assert r.faults == []
        assert (r.ret & 0xFF if kind == "load" else m.read(target, 1)[0]) == MARK
        return
    [e] = r.faults
    insn = disasm_one(m.read(e.rip, 16), e.rip)
    assert (e.address, e.resolution, e.action, e.resume_at) == (target, "extable", "skip", e.rip + insn.size)
    assert e.cleared == ("rax" if kind == "load" else None)
    if kind == "load":
        assert r.ret == 0
    access = "READ" if kind == "load" else "WRITE"
    user = (src + off + UVM) & 0xFFFF_FFFF_FFFF_FFFF
    report = m.progs.by_name["p"].stream_read(BPF_STDERR).decode()
    assert report.startswith(f"ERROR: Arena {access} access at unmapped address {user:#x}\n")
    assert m.pte(target & PAGE_MASK) == 0
