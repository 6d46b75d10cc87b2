"""The scratch page: bpf_arena_handle_page_fault() and what each policy does around it."""

import pytest

from emu import Machine
from emu.bpf.arena import GUARD_SZ, KERN_VM_SZ, SZ_4G, SegmentationFault
from emu.bpf.stream import BPF_PROG_STREAM_ERROR_CNT, BPF_STDERR
from emu.corpus import bpf_prog
from emu.kernel.events import COMPLETED, PROGRESSED
from emu.mm.layout import PAGE_SIZE
from emu.mm.physmem import FrameKind
from emu.x86.pgtable import PAGE_KERNEL, mk_pte

UVM = 0x7F7D_2620_0000


def loaded(policy: str = "scratch", knobs: tuple[str, ...] = ()) -> Machine:
    m = Machine(policy=policy, knobs=knobs)
    m.load(bpf_prog("scratch.S"))
    return m


def test_a_kfunc_fault_is_recovered_and_the_instruction_restarts_and_completes():
    m = loaded()
    r = m.call("arena_arg_unpopulated")
    assert (r.status, r.ret) == ("returned", 0)
    [e] = r.faults
    a = m.arena
    kaddr = a.kern_vm_start + 0x2620_1000
    assert (e.address, e.rip, e.where) == (kaddr, m.symbol("bpf_kfunc_arena_read_u64") + 4,
                                           "bpf_kfunc_arena_read_u64+0x4/0x10")
    assert (e.resolution, e.handler, e.action, e.resume_at, e.retry, e.completed) == (
        "scratch", "bpf_arena_handle_page_fault", "restart", None, COMPLETED, True)
    assert e.pte_before == 0
    assert e.pte_after == a.scratch_pte == mk_pte(a.scratch_pfn, PAGE_KERNEL)
    assert m.mem.kind(a.scratch_pfn) == FrameKind.SCRATCH
    prog = m.progs.by_name["arena_arg_unpopulated"]
    report = (f"ERROR: Arena READ access at unmapped address {UVM + 0x1000:#x}\n"
              "CPU: 0 UID: 0 PID: 1 Comm: arena-emu\n"
              "Call trace:\n"
              "bpf_kfunc_arena_read_u64+0x4/0x10\n"
              f"{prog.ksym}+0x47/0x50\n"
              "  call bpf_kfunc_arena_read_u64 @ scratch.S:43\n"
              "emu_call_return+0x0/0x10\n"
              "\n")
    assert e.steps[-3:] == [
        "page_fault_oops: kfence_handle_page_fault() declined: not a KFENCE address",
        f"page_fault_oops: bpf_arena_handle_page_fault({kaddr:#x}, read) handled it: arena_arg_unpopulated is on "
        f"the stack; scratch page at {kaddr:#x}, no TLB flush -> return, the instruction restarts",
        f"bpf_stream_stage: reported to arena_arg_unpopulated's stderr ({len(report)} bytes)"]
    assert prog.stream_read(BPF_STDERR).decode() == e.stream == report


def test_the_report_names_the_page_not_the_byte():
    m = loaded()
    m.call("same_page_twice")
    text = m.progs.by_name["same_page_twice"].stream_read(BPF_STDERR).decode()
    assert text.count("ERROR") == 1 and f"unmapped address {UVM + 0x1000:#x}\n" in text
    [e] = m.events
    assert e.address == m.arena.kern_vm_start + 0x2620_1000


def test_rep_movsb_restarts_once_per_page_with_its_progress():
    m = loaded()
    r = m.call("copy_to_unallocated")
    dst = m.arena.kern_vm_start + 0x2620_4000
    assert [(e.address - dst, e.rcx, e.action, e.retry) for e in r.faults] == [
        (0x0000, 0x3000, "restart", PROGRESSED),
        (0x1000, 0x2000, "restart", PROGRESSED),
        (0x2000, 0x1000, "restart", COMPLETED)]
    copy = m.symbol("bpf_kfunc_arena_copy")
    assert {(e.rip - copy, e.insn) for e in r.faults} == {(0xA, "rep movsb (%rsi), (%rdi)")}
    assert r.ret == 0x0303_0303_0303_0303  # all three pages alias the scratch page; the last copy wins


def test_a_thousand_scratch_faults_in_one_call_are_all_recovered_and_reports_stop():
    """The stream fills first when no one reads it (100,000 bytes); attempts still count
    toward the 512-report limit, and recovery goes on after both."""
    m = loaded()
    r = m.call("touch_pages", 1000)
    assert (r.status, r.ret, len(r.faults)) == ("returned", 0, 1000)
    assert all(e.resolution == "scratch" and e.retry in (COMPLETED, PROGRESSED) for e in r.faults)
    reported = [e for e in r.faults if e.stream]
    size = len(reported[0].stream)
    assert len(reported) == 99_999 // size
    assert reported == r.faults[:len(reported)]
    assert r.faults[BPF_PROG_STREAM_ERROR_CNT - 1].steps[-1].endswith("(the stream is full)")
    assert r.faults[BPF_PROG_STREAM_ERROR_CNT].steps[-1] == (
        "bpf_stream_stage: not reported: touch_pages reached its limit of error reports")
    assert m.progs.by_name["touch_pages"].stream_error_cnt == 1000


def test_with_a_reader_every_scratch_fault_reports_until_the_limit():
    m = loaded()
    prog = m.progs.by_name["touch_pages"]
    counts = []
    for _ in range(3):
        r = m.call("touch_pages", 300)
        assert r.status == "returned" and len(r.faults) == 300
        counts.append(prog.stream_read(BPF_STDERR).decode().count("ERROR"))
        m.arena.free_pages(UVM + PAGE_SIZE, 300)  # unscratch them, so the next call faults again
    assert counts == [300, BPF_PROG_STREAM_ERROR_CNT - 300, 0]


def test_user_space_never_sees_the_scratch_page():
    m = loaded()
    m.call("scratch_aliasing")
    with pytest.raises(SegmentationFault) as e:
        m.arena.user_read(UVM + 0x1000, 8)
    assert str(e.value).startswith(f"SIGSEGV at {UVM + 0x1000:#x}: the kernel scratched this page")


def test_the_scratch_page_is_never_re_zeroed_and_survives_frees():
    m = loaded()
    a = m.arena
    m.call("scratch_aliasing")  # writes 0x41 into the scratch page
    a.free_pages(UVM + 0x1000, 2)  # both scratched PTEs cleared, the page kept
    assert m.pte(a.kern_addr(UVM + 0x1000)) == 0
    assert m.mem.kind(a.scratch_pfn) == FrameKind.SCRATCH
    assert m.mem.read_u64(a.scratch_pfn << 12) == 0x41


def test_destroying_the_arena_frees_the_scratch_page_once_and_every_page():
    m = loaded()
    a = m.arena
    m.call("arena_arg_unpopulated")  # page 0 allocated, page 1 scratched
    in_use = m.mem.frames_in_use()
    a.arena_map_free()
    assert m.mem.frames_of(FrameKind.SCRATCH) == 0 and m.mem.frames_of(FrameKind.ARENA) == 0
    assert m.mem.frames_in_use() == in_use - 2
    assert m.pte(a.kern_addr(UVM)) == m.pte(a.kern_addr(UVM + 0x1000)) == 0


def test_scratch_v1_allocation_over_a_scratched_page_fails_every_time():
    m = loaded("scratch-v1")
    a = m.arena
    m.call("same_page_twice")
    assert [a.alloc_pages(UVM + 0x1000, 1) for _ in range(3)] == [0, 0, 0]
    assert a.rt.is_range_tree_set(1, 1)  # the failed allocation gave the page back
    assert a.is_scratch(m.pte(a.kern_addr(UVM + 0x1000)))
    assert a.alloc_pages(UVM + 0x2000, 1) == UVM + 0x2000  # other pages are fine


def test_scratch_replaces_the_scratch_page_with_a_zeroed_one():
    m = loaded()
    a = m.arena
    m.call("scratch_aliasing")
    assert a.alloc_pages(UVM + 0x1000, 1) == UVM + 0x1000
    pte = m.pte(a.kern_addr(UVM + 0x1000))
    assert not a.is_scratch(pte) and m.mem.kind(pte >> 12 & 0xF_FFFF_FFFF) == FrameKind.ARENA
    assert m.read_u64(a.kern_addr(UVM + 0x1000)) == 0


def test_a_kernel_write_to_a_read_only_scratch_page_oopses_with_a_permissions_violation():
    m = loaded("scratch", ("scratch-readonly",))
    r = m.call("scratch_aliasing")
    first, second = r.faults
    assert (first.resolution, first.action, first.pte_after & 2) == ("scratch", "restart", 0)
    assert second.error_code.value == 0x3 and second.resolution == "oops"
    assert r.oops.splitlines()[1:3] == ["#PF: supervisor write access in kernel mode",
                                        "#PF: error_code(0x0003) - permissions violation"]


def test_map_always_maps_the_garbage_page_in_every_kernel_pte_and_free_restores_it():
    m = Machine(policy="map-always")
    a = m.create_arena(4)
    garbage = mk_pte(a.garbage_pfn, PAGE_KERNEL)
    for va in (a.kern_vm, a.kern_vm_start - 8, a.kern_vm_start + SZ_4G, a.kern_vm + KERN_VM_SZ - 1):
        assert m.pte(va & ~0xFFF) == garbage
    p = a.alloc_pages(0, 1)
    assert m.pte(a.kern_addr(p)) != garbage
    a.free_pages(p, 1)
    assert m.pte(a.kern_addr(p)) == garbage
    assert m.mem.frames_of(FrameKind.GARBAGE) == 1
    assert a.user_read_u64(p + PAGE_SIZE) == 0  # a user touch allocates over the garbage page
    assert m.mem.kind(m.pte(a.kern_addr(p + PAGE_SIZE)) >> 12 & 0xF_FFFF_FFFF) == FrameKind.ARENA


def test_the_oops_policy_has_no_arena_handler_and_no_scratch_page():
    m = loaded("oops")
    assert [h.name for h in m.oops_handlers] == ["kfence_handle_page_fault"]
    assert m.arena.scratch_pfn is None
    r = m.call("arena_arg_unpopulated")
    assert r.status == "oops" and r.faults[0].steps[-3] == (
        "page_fault_oops: kfence_handle_page_fault() declined: not a KFENCE address")


def test_the_lower_half_guard_is_not_recovered():
    m = loaded()
    r = m.call("lower_guard")
    [e] = r.faults
    assert e.address == m.arena.kern_vm_start - 8
    assert f"declined: {e.address:#x} is outside arena's [kern_vm_start, +4 GiB + 32 KiB)" in e.steps[-3]
    assert r.oops.startswith(f"BUG: unable to handle page fault for address: {e.address:016x}\n")


def test_the_upper_half_guard_is_recovered_up_to_its_end():
    m = loaded()
    r = m.call("upper_guard")
    [e] = r.faults
    assert e.address == m.arena.kern_vm_start + 0xFFFF_F000 + 0x7FF8
    assert e.address < m.arena.kern_vm_start + SZ_4G + GUARD_SZ // 2
    page = (UVM & ~0xFFFF_FFFF) + 0x1_0000_6000  # the page-aligned offset past 4 GiB, as a user address
    assert e.stream.startswith(f"ERROR: Arena READ access at unmapped address {page:#x}\n")


class RecordingMM:
    """An arena's mm that notes what the range tree says at each TLB flush."""

    def __init__(self, machine: Machine):
        self.mem, self.pgtables, self.flushes, self.arena = machine.mem, machine.pgtables, [], None

    def flush_tlb_kernel_range(self, start: int, end: int) -> None:
        self.flushes.append((start, end, self.arena.rt.runs()))


@pytest.mark.parametrize(("knobs", "free_at_flush"), [((), [(0, 4)]), (("flush-before-release",), [(1, 4)])])
def test_a_free_returns_the_range_before_its_flush_unless_the_knob_says_after(knobs, free_at_flush):
    from emu.bpf.arena import arena_map_alloc
    from emu.policy import Policy

    m = Machine()
    mm = RecordingMM(m)
    a = arena_map_alloc(mm, m.get_vm_area(KERN_VM_SZ), 4, policy=Policy.parse("scratch", knobs))
    mm.arena = a
    p = a.alloc_pages(0, 1)
    a.free_pages(p, 1)
    k = a.kern_addr(p)
    assert mm.flushes == [(k, k + PAGE_SIZE, free_at_flush)]
    assert a.rt.runs() == [(0, 4)]
