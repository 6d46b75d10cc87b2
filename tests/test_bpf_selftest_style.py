"""Programs written like the kernel's arena selftests (vmlinux.h-style includes, bpf_arena_alloc.h and
bpf_arena_list.h, bpf_for, cond_break, arena_base(), bpf_stream_printk()), built against the shipped headers:
what the kernel returns, and the faults and reports it makes, under every policy."""

import struct

import pytest
from test_bpf_objects import POLICIES, line, load, report_head, where

from emu.bpf.stream import BPF_STDERR, BPF_STDOUT
from emu.bpf.verifier import VerifierError
from emu.errors import EmuError

NODE = 16  # struct arena_list_node: next, pprev


def walk(arena, first: int) -> list[int]:
    """The node addresses of an arena list, followed from user space as the selftests' user side does."""
    out = []
    while first:
        out.append(first)
        first = arena.user_read_u64(first)
    return out


@pytest.mark.parametrize("policy", POLICIES)
def test_a_list_built_by_one_program_and_deleted_by_another(policy):
    m, obj = load("arena_list_del", policy)
    arena, globs = obj.maps["arena"], obj.arena_globals
    assert arena.user_vm_start == 1 << 44
    assert globs.base == arena.user_vm_start + 99 * 4096  # libbpf puts the __arena globals in the last page
    assert (globs["test_val"], globs["arena_sum"], globs["global_head"]) == (1, 0, 0)  # initial values
    obj.bss["cnt"] = 10
    r = obj.run("arena_list_add")
    assert (r.status, r.ret, r.faults) == ("returned", 0, [])
    assert (globs["test_val"], globs["arena_sum"]) == (11, 45)
    page = arena.user_vm_start  # the allocator's first page, carved downwards from its 8-byte object count
    assert (obj.bss["cur_page"], obj.bss["cur_offset"]) == (page, 4096 - 8 - 10 * 24)
    assert arena.user_read_u64(page + 4096 - 8) == 10
    assert obj.bss["list_head"] == globs.address("global_head")
    nodes = walk(arena, globs["global_head"])
    assert nodes == [page + 4096 - 8 - 24 * k for k in range(10, 0, -1)]  # pushed at the head: the last first
    assert [arena.user_read_u64(n + NODE) for n in nodes] == list(range(9, -1, -1))
    assert arena.user_read_u64(nodes[0] + 8) == globs.address("global_head")  # pprev of the first: the head
    r = obj.run("arena_list_del")
    assert (r.status, r.ret, r.faults) == ("returned", 0, [])
    assert (obj.bss["list_sum"], globs["arena_sum"], globs["global_head"]) == (45, 45, 0)
    assert m.stream_text() == ""


@pytest.mark.parametrize("policy", POLICIES)
def test_the_last_free_returns_the_page_and_the_allocator_then_writes_into_it(policy):
    """bpf_free() of the page's last object frees the page, but the page-fragment allocator keeps it as its
    current page (as the selftests' allocator does): the next bpf_alloc() writes into a freed page."""
    m, obj = load("arena_list_del", policy)
    arena = obj.maps["arena"]
    obj.bss["cnt"] = 2
    assert (obj.run("arena_list_add").faults, obj.run("arena_list_del").faults) == ([], [])
    obj.bss["cnt"] = 1
    r = obj.run("arena_list_add")
    assert (r.status, r.ret) == ("returned", 0)
    page = arena.user_vm_start
    if policy == "map-always":  # the freed page's PTE is the garbage page again: the writes land there
        assert r.faults == [] and m.stream_text() == ""
        return
    # the object count's read and increment, the value, and list_add_head()'s stores into the new node
    heads = report_head(m)
    assert len(r.faults) == len(heads) >= 3
    assert all((f.resolution, f.action) == ("extable", "skip") for f in r.faults)
    assert {f.address & ~0xFFF for f in r.faults} == {arena.kern_vm_start}
    assert heads[0] == f"ERROR: Arena READ access at unmapped address {page + 4096 - 8:#x}"
    assert heads[1] == f"ERROR: Arena WRITE access at unmapped address {page + 4096 - 8:#x}"
    assert obj.bss["cur_offset"] == 4096 - 8 - 3 * 24


@pytest.mark.parametrize("policy", POLICIES)
def test_a_hash_table_of_arena_lists(policy):
    """The shipped bpf_arena_htab.h: every key's first element replaced and freed, walked from user space."""
    m, obj = load("arena_htab_lists", policy)
    r = obj.run("arena_htab_llvm")
    assert (r.status, r.ret, r.faults) == ("returned", 0, [])
    assert (obj.bss["looked_up"], obj.bss["each_sum"]) == (501 + 0, 3 + 4 + 5 + 6)
    arena = obj.maps["arena"]
    table = obj.bss["htab_for_user"]
    assert table == arena.user_vm_start + 4096 - 8 - 16  # the first object of the first page
    buckets, n_buckets = struct.unpack("<QI", arena.user_read(table, 12))
    assert (buckets, n_buckets) == (arena.user_vm_start + 4096, 1024)  # two pages of 8-byte heads
    for key in range(1000):  # struct hashtab_elem: hash, key, value, then the node
        nodes = walk(arena, arena.user_read_u64(buckets + 8 * (key % 1024)))
        assert [struct.unpack("<iii", arena.user_read(n - 16, 12)) for n in nodes] == [(key, key, key + 1)]
    # 2000 elements of 32 bytes, 127 to a page, 1000 freed: pages whose count reached 0 went back
    assert (obj.bss["cur_page"], obj.bss["cur_offset"]) == (arena.user_vm_start + 8 * 4096, 4096 - 8 - 95 * 32)
    assert m.stream_text() == ""


@pytest.mark.parametrize("policy", POLICIES)
def test_a_four_gib_arena_first_and_last_pages(policy):
    m, obj = load("arena_large", policy)
    arena = obj.maps["arena"]
    assert arena.max_entries == 1 << 20
    r = obj.run("first_and_last")
    assert (r.status, r.ret) == ("returned", 0)
    if policy == "map-always":
        assert r.faults == [] and m.stream_text() == ""
        return
    start, k = arena.user_vm_start, arena.kern_vm_start
    # the freed first page, the pages after and before it (that one below kern_vm_start: the lower guard,
    # as the load's offset is -4096), and the page below the next-to-last; the page above it holds the globals
    assert [f.address - k for f in r.faults] == [0, 4096, -4096, (1 << 32) - 3 * 4096]
    assert all((f.resolution, f.action, bool(f.cleared)) == ("extable", "skip", True) for f in r.faults)
    assert [where(f) for f in r.faults] == [line("arena_large", s) for s in (
        "if (*first != 0)", "*(first + PAGE_SIZE) != 0", "*(first + PAGE_SIZE) != 0",
        "*(high + PAGE_SIZE) != 0")]
    assert report_head(m) == [f"ERROR: Arena READ access at unmapped address {a:#x}" for a in (
        start, start + 4096, start - 4096, start + (1 << 32) - 3 * 4096)]


@pytest.mark.parametrize("policy", POLICIES)
def test_reserved_pages_fault_as_unallocated_ones(policy):
    m, obj = load("arena_large", policy)
    r = obj.run("reserved")
    if policy == "map-always":  # a reserved page maps the garbage page too: the 0x5a is read back
        assert (r.ret, r.faults) == (2, [])
        return
    assert (r.status, r.ret) == ("returned", 0)
    base = obj.maps["arena"].user_vm_start + 16384 * 4096
    pages = [base + i * 4096 for i in range(4)]
    assert report_head(m) == [f"ERROR: Arena WRITE access at unmapped address {p:#x}" for p in pages] + [
        f"ERROR: Arena READ access at unmapped address {p:#x}" for p in pages]
    assert [where(f) for f in r.faults] == [line("arena_large", "*page = 0x5a;")] * 4 + [
        line("arena_large", "if (*page)")] * 4


@pytest.mark.parametrize("policy", POLICIES)
def test_the_allocator_fills_freed_gaps_and_many_pages_at_once(policy):
    m, obj = load("arena_large", policy)
    r = obj.run("fill_gaps")
    assert (r.status, r.ret, r.faults) == ("returned", 0, [])
    r = obj.run("many_at_once")  # SEC("socket"), bpf_for over 2051 pages
    assert (r.status, r.ret, r.faults) == ("returned", 0, [])
    assert m.stream_text() == ""


def test_arena_base_reads_the_user_address_through_the_map():
    _, obj = load("arena_large")
    arena = obj.maps["arena"]
    assert obj.run("reserved").ret == 0
    assert arena.reserve_pages(arena.user_vm_start + 16384 * 4096, 1) != 0  # the program's reservation holds


def test_open_coded_iterators_loops_and_subprograms():
    m, obj = load("arena_iters", "scratch")
    r = obj.run("iterate")
    assert (r.status, r.ret, r.faults) == ("returned", 285 * 1000 + 5, [])
    b = obj.bss
    assert (b["repeats"], b["nested"], b["reversed_turns"]) == (5, 120, 0)
    assert (b["empty_ret"], b["big_ret"]) == (2**32 - 22, 2**32 - 7)  # -EINVAL, -E2BIG as ints
    assert (b["cpu"], b["t1"] - b["t0"], b["swapped"]) == (0, 1000, 0x3412CDAB)
    globs = obj.arena_globals
    assert globs["total"] == 1000 + 285  # bpf_loop stopped by the callback's 1 after its tenth turn
    assert [globs.arena.user_read_u64(globs.address("squares") + 8 * i) for i in range(12)] == [
        i * i for i in range(10)] + [0, 0]


def test_stream_printk_and_trace_printk():
    m, obj = load("arena_iters", "scratch")
    obj.run("iterate")
    r = obj.run("speak")
    assert (r.status, r.ret) == ("returned", 0)
    prog = m.progs.by_name["speak"]
    assert prog.stream_read(BPF_STDOUT) == b"total 1285 squares[3] 9\n123456789101112\n"
    assert prog.stream_read(BPF_STDERR) == b"no arguments\n"
    assert m.bpf.trace_pipe == [f"arena-emu-1 [000] bpf_trace_printk: {s}" for s in (
        "trace 1 2 3", "five 1 2 3 4 five", "none")]  # more than three arguments: bpf_trace_vprintk()


def test_an_iterator_must_live_on_the_stack():
    with pytest.raises(VerifierError, match=r"^prog iter_in_bss: insn \d+: arg#0 expected pointer to an iterator on "
                                            r"stack \(.*bad_iter_global.bpf.c:10: "):
        load("bad_iter_global")


def test_section_names_run_as_test_runs_or_are_refused_as_the_kernel_does():
    _, obj = load("sections")
    runs = ("rawtp", "fent", "sock", "tc_prog", "xdp_prog", "sys", "fex")
    assert [obj.run(p).ret for p in runs] == [1, 2, 3, 4, 5, 6, 11]
    for prog, sec, kind in (("tp", "tp/syscalls/sys_enter_nanosleep", "TRACEPOINT"),
                            ("kp", "kprobe/do_nanosleep", "KPROBE"), ("pe", "perf_event", "PERF_EVENT"),
                            ("tpbtf", "tp_btf/sys_enter", "TRACING")):
        with pytest.raises(EmuError) as e:
            obj.run(prog)
        assert str(e.value) == (f'{prog}: BPF_PROG_TEST_RUN refuses SEC("{sec}") (-ENOTSUPP): '
                                f"BPF_PROG_TYPE_{kind} has no test run")
    assert obj.bss["hits"] == 7


ATOMIC_RESULTS = {
    "add64_value": 3, "add64_result": 1, "add32_value": 3, "add32_result": 1, "add_stack_result": 1,
    "add_stack_value_copy": 3, "add_noreturn_value": 3,
    "sub64_value": 2**64 - 1, "sub64_result": 1, "sub32_value": 2**32 - 1, "sub32_result": 1,
    "and64_value": 0x010 << 32, "or64_value": 0x111 << 32, "xor64_value": 0x101 << 32, "and32_value": 0x010,
    "cmpxchg64_value": 2, "cmpxchg64_result_fail": 1, "cmpxchg64_result_succeed": 1,
    "cmpxchg32_value": 2, "cmpxchg32_result_fail": 1, "cmpxchg32_result_succeed": 1,
    "xchg64_value": 2, "xchg64_result": 1, "xchg32_value": 2, "xchg32_result": 1,
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("cpu", ["v3", "v4"])
def test_every_atomic_x86_takes_on_arena_globals(policy, cpu):
    m, obj = load("arena_atomics_all", policy, f"-mcpu={cpu}")
    g = obj.arena_globals
    assert obj.run("add").ret == 0  # pid is not yet the test's: the program stops at its check
    assert (g["add64_value"], g["add64_result"]) == (1, 0)
    obj.bss["pid"] = 1  # the task running test runs (the reports' "PID: 1")
    results = [obj.run(p) for p in ("add", "sub", "bitwise", "exchange")]
    assert [(r.status, r.ret, r.faults) for r in results] == [("returned", 1, [])] + [("returned", 0, [])] * 3
    assert {k: g[k] for k in ATOMIC_RESULTS} == ATOMIC_RESULTS
    if cpu == "v4":
        r = obj.run("acquire_release")
        assert (r.ret, r.faults) == (0, [])
        assert g["acq_sum"] == 0x12 + 0x1234 + 0x12345678 + 0x1234567890ABCDEF
        assert (g["rel64"], g["rel32"]) == (0x1122334455667788, 0x99AABBCC)
    assert m.stream_text() == ""


@pytest.mark.parametrize("policy", POLICIES)
def test_atomics_on_a_freed_page_are_each_recovered(policy):
    m, obj = load("arena_atomics_all", policy)
    g = obj.arena_globals
    r = obj.run("uaf")
    assert (r.status, r.ret, g["uaf_recovery_fails"]) == ("returned", 0, 0)
    if policy == "map-always":  # the garbage page takes them all: 0 +1 (1) +1 (2) -1 (1), cmpxchg/xchg read 1...
        assert (r.faults, g["uaf_sink"]) == ([], 0 + 2 + 1 + 1 + 1 + 3 + 2 + 2)
        return
    # a faulting fetch leaves its operand (r0 for cmpxchg) in place: 1, -1 as a u32, 0, 1 twice over
    assert g["uaf_sink"] == (1 + 0xFFFF_FFFF + 0 + 1) + (1 - 1 + 0 + 1)
    page = obj.maps["arena"].user_vm_start
    assert [(f.resolution, f.action, f.address) for f in r.faults] == [
        ("extable", "skip", obj.maps["arena"].kern_vm_start)] * 12
    assert report_head(m) == [f"ERROR: Arena WRITE access at unmapped address {page:#x}"] * 12


def test_stdout_fills_to_the_stream_capacity():
    m, obj = load("stream_reports")
    r = obj.run("stream_exhaust")  # 1851 lines of 54 bytes fit under BPF_STREAM_MAX_CAPACITY, the next does not
    assert (r.status, r.ret, obj.bss["size"]) == ("returned", 0, 99954)
    assert m.progs.by_name["stream_exhaust"].stream_read(BPF_STDOUT) == b"x" * 99954
    assert obj.run("stream_syscall").ret == 0
    assert m.progs.by_name["stream_syscall"].stream_read(BPF_STDOUT) == b"foo"


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("prog, access, text", [
    ("stream_arena_write_fault", "WRITE", "*(u32 *)(r1 + 0x7fff) = r2;"),
    ("stream_arena_read_fault", "READ", "r1 = *(u32 *)(r1 + 0x7fff);"),
])
def test_an_access_past_the_arenas_pages_is_reported_to_stderr(policy, prog, access, text):
    """user_vm_start read through the map pointer (struct bpf_arena), cast with bpf_addr_space_cast(), and an
    inline-assembly access 0x7fff past it: the arena has one page."""
    m, obj = load("stream_reports", policy)
    arena = obj.maps["arena"]
    r = obj.run(prog)
    assert (r.status, r.ret, obj.bss["fault_addr"]) == ("returned", 0, arena.user_vm_start + 0x7FFF)
    stderr = m.progs.by_name[prog].stream_read(BPF_STDERR).decode()
    if policy == "map-always":
        assert (r.faults, stderr) == ([], "")
        return
    (f,) = r.faults
    assert (f.resolution, f.action, f.address) == ("extable", "skip", arena.kern_addr(arena.user_vm_start + 0x7FFF))
    assert where(f) == line("stream_reports", text)
    lines = stderr.splitlines()
    assert lines[:3] == [f"ERROR: Arena {access} access at unmapped address {arena.user_vm_start + 0x7FFF:#x}",
                         "CPU: 0 UID: 0 PID: 1 Comm: arena-emu", "Call trace:"]
    assert lines[3].startswith("bpf_prog_") and f"_{prog}+0x" in lines[3]


@pytest.mark.parametrize("policy", POLICIES)
def test_a_fault_in_a_static_subprogram_names_both_frames(policy):
    m, obj = load("stream_reports", policy)
    arena = obj.maps["arena"]
    r = obj.run("stream_arena_subprog_fault")
    assert (r.status, r.ret) == ("returned", 0)
    assert obj.bss["arena_ptr"] == arena.map_ptr  # a map pointer stored in .bss, as allow_ptr_leaks permits
    stderr = m.progs.by_name["stream_arena_subprog_fault"].stream_read(BPF_STDERR).decode().splitlines()
    if policy == "map-always":
        assert (r.faults, stderr) == ([], [])
        return
    (f,) = r.faults
    assert f.address == arena.kern_vm_start + 0xDEADBEEF
    user = arena.user_vm_start >> 32 << 32 | 0xDEADBEEF  # the upper half of user_vm_start, the (u32) address
    assert stderr[0] == f"ERROR: Arena WRITE access at unmapped address {user:#x}"
    frames = [s.split("+")[0].split("_", 3)[3] if s.startswith("bpf_prog_") else s.strip() for s in stderr[3:7]]
    assert frames == ["subprog", f"*addr = 1; @ {line('stream_reports', '*addr = 1;')}",
                      "stream_arena_subprog_fault", f"subprog(); @ {line('stream_reports', 'subprog();')}"]


def test_a_no_prealloc_hash_map_from_a_program():
    _, obj = load("hash_noprealloc")
    r = obj.run("churn")
    assert (r.status, r.ret, r.faults) == ("returned", 0, [])
    b, h = obj.bss, obj.maps["h"]
    assert (b["old_seen"], b["new_seen"]) == (10, 20)  # the replaced element keeps its bytes until reused
    assert b["second_elem"] - b["first_elem"] == h.elem_size  # the replacement is the cache's next element
    assert (b["full_ret"], b["replace_ret"]) == (2**64 - 7, 0)  # -E2BIG for a third key; a replacement is fine
    assert [(k, h.lookup_elem(k)) for k in h] == [(struct.pack("<I", k), struct.pack("<Q", 20)) for k in (1, 2)]


@pytest.mark.parametrize("policy", POLICIES)
def test_naked_assembly_programs_reach_arena_globals(policy):
    m, obj = load("naked_asm", policy)
    assert obj.run("naked_read").ret == 5
    r = obj.run("naked_unallocated")
    below = obj.arena_globals.address("val") - 4096
    if policy == "map-always":  # the garbage page keeps the store
        assert (r.ret, r.faults) == (7, [])
        return
    assert (r.ret, [(f.resolution, f.action) for f in r.faults]) == (0, [("extable", "skip")] * 2)
    assert report_head(m) == [f"ERROR: Arena {a} access at unmapped address {below:#x}" for a in ("WRITE", "READ")]


def test_a_missing_weak_kfunc_loads_but_a_call_to_it_is_refused():
    with pytest.raises(VerifierError, match=r"^prog call_missing: insn \d+: invalid kernel function call not "
                                            r"eliminated in verifier pass \(.*bad_weak_kfunc.bpf.c:12: "):
        load("bad_weak_kfunc")
