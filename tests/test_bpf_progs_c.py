"""The programs of bpf_progs/ in C, as shipped built (bpf_progs/*.bpf.o): the same faults, fixups and
return values as their JIT-style assembly (tests/test_bpf_progs.py), the reports naming C lines."""

import re
from pathlib import Path

import pytest

from emu import Machine
from emu.corpus import bpf_prog, stub
from emu.errors import EmuError
from emu.mm.layout import PAGE_SIZE
from emu.mm.physmem import FrameKind
from emu.policy import POLICIES, Policy
from emu.tools.build import build_kernel
from emu.tools.explore import Entry, Scenario, Schedule, run_schedule
from emu.x86.pgtable import pte_pfn

UVM = 0x7F7D_2620_0000  # every program's arena sits at the default user_vm_start (map_extra)
KVM = "ARENA_KERN_VM_START + (ARENA_USER_VM_START & 0xffffffff)"


def load(name: str, *kernel: str, policy: str = "scratch"):
    m = Machine(policy=policy)
    m.load(*kernel)
    return m, m.load_bpf(bpf_prog(f"{name}.bpf.o"))


def line(name: str, text: str) -> int:
    """The line of bpf_progs/NAME.bpf.c that holds `text`."""
    lines = Path(bpf_prog(f"{name}.bpf.c")).read_text().splitlines()
    (found,) = [i + 1 for i, s in enumerate(lines) if text in s]
    return found


def ksym(m: Machine, prog: str) -> str:
    return m.progs.by_name[prog].ksym


def test_stream_read_fault_reports_the_user_address_and_the_c_line():
    m, obj = load("stream")
    r = obj.run("stream_arena_read_fault")
    (e,) = r.faults
    assert (r.ret, e.address, e.error_code.access, e.resolution, e.action, e.cleared) == (
        0, m.arena.kern_vm_start + 0x2620_7FFF, "read", "extable", "skip", "rax")
    assert e.source == f"./stream.bpf.c:{line('stream', 'return *(volatile __u32')}"
    assert m.stream_text() == (
        f"ERROR: Arena READ access at unmapped address {UVM + 0x7FFF:#x}\n"
        "CPU: 0 UID: 0 PID: 1 Comm: arena-emu\n"
        "Call trace:\n"
        f"{m.symbolize(e.rip)}\n"
        f"  return *(volatile __u32 __arena *)(ARENA_BASE + 0x7fff); @ stream.bpf.c:{line('stream', 'return *(vol')}\n"
        "emu_call_return+0x0/0x10\n"
        "\n")


def test_stream_write_fault_clears_nothing_and_a_subprogram_reports_to_its_main_program():
    m, obj = load("stream")
    (e,) = obj.run("stream_arena_write_fault").faults
    assert (e.error_code.access, e.cleared, e.action) == ("write", None, "skip")
    r = obj.run("stream_arena_subprog_fault")
    assert r.ret == 0
    report = m.progs.by_name["stream_arena_subprog_fault"].stream_read(2).decode()
    assert report.startswith(f"ERROR: Arena WRITE access at unmapped address {(UVM & ~0xFFFF_FFFF) + 0xDEADBEEF:#x}\n")
    trace = report.split("Call trace:\n")[1]
    assert re.fullmatch(
        r"bpf_prog_[0-9a-f]{16}_subprog\+0x[0-9a-f]+/0x[0-9a-f]+\n"
        rf"  \*\(volatile int __arena \*\)0xdeadbeef = 1; @ stream\.bpf\.c:{line('stream', '0xdeadbeef')}\n"
        r"bpf_prog_[0-9a-f]{16}_stream_arena_subprog_fault\+0x[0-9a-f]+/0x[0-9a-f]+\n"
        rf"  return subprog\(\); @ stream\.bpf\.c:{line('stream', 'return subprog')}\n"
        r"emu_call_return\+0x0/0x10\n\n", trace)


def test_use_after_free_reads_zero():
    m, obj = load("arena_alloc")
    r = obj.run("alloc_write_free_read")
    assert r.ret == 42 << 32
    (e,) = r.faults
    assert (e.address, e.error_code.access, e.source) == (
        m.arena.kern_vm_start + 0xFFFF_E000, "read", f"./arena_alloc.bpf.c:{line('arena_alloc', 'after = *page;')}")
    assert m.stream_text().startswith("ERROR: Arena READ access at unmapped address 0xffffe000\n")


def test_accesses_just_outside_a_two_page_allocation_are_dropped_and_read_zero():
    m, obj = load("arena_alloc")
    r = obj.run("two_pages_and_outside")
    assert r.ret == 0x0201_0000
    assert [(e.address - m.arena.kern_vm_start, e.error_code.access, e.cleared is None) for e in r.faults] == [
        (0xFFFF_DFFC, "write", True), (0x1_0000_0000, "write", True),
        (0xFFFF_DFFC, "read", False), (0x1_0000_0000, "read", False)]
    assert [e.source.rsplit(":", 1)[1] for e in r.faults] == [
        str(line("arena_alloc", t)) for t in ("page[-1] = 3;", "page[2048] = 4;", "return page[-1]", "return page[-1]")]


def test_a_list_built_and_summed_in_the_arena_through_globals():
    m, obj = load("arena_list")
    obj.bss["list_len"] = 20
    assert obj.run("arena_list_build").ret == 0
    assert obj.bss["list_head"] == UVM
    assert obj.run("arena_list_sum").ret == 0
    assert obj.bss["list_sum"] == sum(range(1, 21))
    obj.bss["list_len"] = 257  # more than a page holds
    assert (obj.run("arena_list_build").ret, obj.bss["list_head"]) == (1, 0)


def test_a_list_user_space_built_ends_at_a_next_pointer_into_an_unallocated_page():
    m, obj = load("arena_list")
    a = m.arena
    head = a.user_vm_start + 0x2000
    for i in range(3):
        a.user_write_u64(head + 16 * i, head + 16 * (i + 1) if i < 2 else a.user_vm_start + 5 * PAGE_SIZE)
        a.user_write_u64(head + 16 * i + 8, 10 * (i + 1))
    obj.bss["list_head"] = head
    r = obj.run("arena_list_sum")
    assert obj.bss["list_sum"] == 60
    assert [e.address - a.kern_vm_start for e in r.faults] == [0x2620_5008, 0x2620_5000]  # value, then next: 0
    assert [e.source.rsplit(":", 1)[1] for e in r.faults] == [str(line("arena_list", "sum += n->value;")),
                                                              str(line("arena_list", "n = n->next)"))]


@pytest.mark.parametrize(("prog", "off"), [("atomic_add_unallocated", 0x5000), ("atomic_xadd_unallocated", 0x5008)])
def test_an_atomic_on_an_unallocated_page_is_a_write_and_clears_nothing(prog, off):
    m, obj = load("arena_atomics")
    r = obj.run(prog)
    assert r.ret == 7
    (e,) = r.faults
    assert (e.error_code.access, e.cleared, e.action) == ("write", None, "skip")
    assert e.steps[0].startswith("a read-modify-write access: x86 reports it as a write")
    assert m.stream_text().startswith(f"ERROR: Arena WRITE access at unmapped address {UVM + off:#x}\n")


def test_a_kfunc_reads_an_arena_pointer_the_jit_rebased():
    _, obj = load("arena_kfunc", stub("arena_kfuncs.S"))
    r = obj.run("kfunc_read_allocated")
    assert (r.status, r.ret, r.faults) == ("returned", 0x1234, [])


def test_a_kfunc_fault_on_an_unallocated_page_oopses_under_oops_with_the_program_in_the_trace():
    m, obj = load("arena_kfunc", stub("arena_kfuncs.S"), policy="oops")
    r = obj.run("kfunc_read_unallocated")
    assert r.status == "oops"
    assert r.oops.splitlines()[0] == f"BUG: unable to handle page fault for address: " \
        f"{m.arena.kern_vm_start + 0x2620_1000:016x}"
    assert "RIP: 0010:bpf_kfunc_arena_read_u64+0x4/0x10" in r.oops
    assert f" {ksym(m, 'kfunc_read_unallocated')}+0x" in r.oops


@pytest.mark.parametrize("policy", POLICIES)
def test_c_kfuncs_called_from_c_under_every_policy(policy):
    kfuncs = str(build_kernel(stub("arena_kfuncs_c.c")))
    runs = {}
    for prog in ("c_kfunc_read_unallocated", "c_kfunc_list_sum", "c_kfunc_copy_to_unallocated"):
        m, obj = load("arena_kfunc_c", kfuncs, stub("string.S"), policy=policy)
        r = obj.run(prog)
        runs[prog] = (r.status, r.ret if r.status == "returned" else None, len(r.faults))
    expect = {"oops": {"c_kfunc_read_unallocated": ("oops", None, 1), "c_kfunc_list_sum": ("returned", 6, 0),
                       "c_kfunc_copy_to_unallocated": ("oops", None, 1)},
              "map-always": {"c_kfunc_read_unallocated": ("returned", 7, 0), "c_kfunc_list_sum": ("returned", 6, 0),
                             "c_kfunc_copy_to_unallocated": ("returned", 0x4141414141414141, 0)}}
    recovered = {"c_kfunc_read_unallocated": ("returned", 7, 1), "c_kfunc_list_sum": ("returned", 6, 0),
                 "c_kfunc_copy_to_unallocated": ("returned", 0x4141414141414141, 1)}
    assert runs == expect.get(policy, recovered)


def h3(policy: Policy | None = None) -> Scenario:
    return Scenario((stub("arena_kfuncs.S"), bpf_prog("smp.bpf.o")), (Entry(0, "h3_alloc"), Entry(1, "h3_reader")),
                    policy=policy, probe=f"{KVM} + 0x1000")


def test_hazard_3_in_c_the_store_after_allocation_is_lost_to_the_scratch_page():
    """CPU 1 stops at the C line after its kfunc read (the scratch page is in its TLB); CPU 0 allocates."""
    at = f"1:@smp.bpf.c:{line('smp', 'bpf_kfunc_arena_read_u64((__u64 *)PAGE(1));') + 1}"
    outcome, m = h3().run(Schedule.parse(at))
    assert outcome.cpus == (("returned", 0), ("returned", 0))
    assert (outcome.reports, outcome.probe) == (1, 0)
    assert m.mem.read_u64(m.arena.scratch_pfn << 12) == 7
    outcome, _ = h3(Policy("scratch", flush_on_replace=True)).run(Schedule.parse(at))
    assert (outcome.reports, outcome.probe) == (1, 7)


def test_the_free_race_in_c_loses_the_store_to_the_released_frame():
    sc = Scenario((stub("arena_kfuncs.S"), bpf_prog("smp.bpf.o")),
                  (Entry(0, "race_free"), Entry(1, "race_alloc"), Entry(2, "race_access")),
                  setup=Entry(0, "race_setup"), probe=f"{KVM} + 0x3000", cpus=3)
    m = sc.start()
    old = pte_pfn(m.pte(m.arena.kern_addr(UVM + 0x3000)))
    at = f"2:@smp.bpf.c:{line('smp', 'if (race_allocated)')} 0:@free-before-flush"
    run_schedule(m, Schedule.parse(at), [0, 1, 2])
    outcome = sc.outcome(m)
    assert outcome.cpus == (("returned", 0), ("returned", 0), ("returned", 0))
    assert (outcome.reports, outcome.probe) == (0, 0)  # CPU 2 stored 7, the new page reads 0
    assert m.mem.read_u64(old << 12) == 7 and m.mem.kind(old) == FrameKind.FREE  # the 7 went to the freed page


def test_the_debugger_stops_at_a_c_line_of_a_shipped_object_and_steps_into_its_kfunc():
    from emu.tools.debugger import Debugger

    d = Debugger([stub("arena_kfuncs.S"), bpf_prog("off_by_one.bpf.o")], "off_by_one")
    d.execute("set context off")
    call = line("off_by_one", "last = bpf_kfunc_arena_read_u64(")
    start = d.m.line_addresses("off_by_one.bpf.c", call)[0]
    assert d.execute(f"break off_by_one.bpf.c:{call}") == f"Breakpoint 1 at {start:#x}: file off_by_one.bpf.c, " \
        f"line {call}."
    d.execute("continue")
    assert d.cpu.reg("rip") == start and len(d.m.events) == 1  # the store to the third page, skipped
    assert d.execute("step") == "13\t\tpush\t%rbp"
    frames = d.execute("bt").splitlines()
    assert frames[0] == f"#0  {d.m.symbol('bpf_kfunc_arena_read_u64'):#018x} in bpf_kfunc_arena_read_u64+0x0/0x10 () " \
        "at arena_kfuncs.S:13"
    assert re.fullmatch(rf"#1  0x[0-9a-f]{{16}} in bpf_prog_[0-9a-f]{{16}}_off_by_one\+0x[0-9a-f]+/0x[0-9a-f]+ \(\) "
                        rf"at off_by_one\.bpf\.c:{call}", frames[1])


def test_a_syscall_programs_ctx_is_at_most_u16_max_bytes_as_bpf_prog_test_run_syscall_checks():
    m = Machine()
    m.load(stub("arena_kfuncs.S"))
    obj = m.load_bpf(bpf_prog("off_by_one.bpf.o"))
    assert obj.run("off_by_one", ctx=b"\1" * 0xFFFF).ret == 0
    assert obj.ctx_out == b"\1" * 0xFFFF
    with pytest.raises(EmuError, match=r"^off_by_one: BPF_PROG_TEST_RUN: -EINVAL: a syscall program's ctx is at "
                                       r"most 65535 bytes \(U16_MAX\), not 65536$"):
        obj.run("off_by_one", ctx=b"\1" * 0x10000)
