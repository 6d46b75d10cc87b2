"""Clang-built arena programs through machine.load_bpf(): what the kernel returns, faults and reports."""

import struct

import pytest
from bpf_build import BPF_C, build

from emu import Machine
from emu.bpf.bpf_map import MapError
from emu.bpf.insn import decode
from emu.bpf.object_load import LoadError
from emu.bpf.stream import BPF_STDERR
from emu.bpf.verifier import VerifierError
from emu.corpus import stub

POLICIES = ("oops", "map-always", "scratch-v1", "scratch")


def line(name: str, text: str) -> str:
    """`file:line` of the one line of tests/bpf_c/<name>.bpf.c that holds `text`."""
    lines = (BPF_C / f"{name}.bpf.c").read_text().splitlines()
    (n,) = [i + 1 for i, s in enumerate(lines) if text in s]
    return f"{name}.bpf.c:{n}"


def where(fault) -> str:
    """The fault's `file:line` without the directory the object was first built in."""
    return fault.source.rsplit("/", 1)[-1]


def s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def load(name: str, policy: str = "scratch", *flags: str, kfuncs: bool = False):
    m = Machine(policy=policy)
    if kfuncs:
        m.load(stub("arena_kfuncs.S"))
    return m, m.load_bpf(str(build(name, *flags)))


def report_head(m: Machine) -> list[str]:
    return [s for s in m.stream_text().splitlines() if s.startswith("ERROR")]


@pytest.mark.parametrize("policy", POLICIES)
def test_a_list_built_in_the_arena_is_summed(policy):
    m, obj = load("arena_list", policy)
    assert obj.data["expected_count"] == 2**32 - 1  # .data's initial -1
    r = obj.run("arena_list_add")
    assert (r.status, r.ret, r.faults) == ("returned", 0, [])
    arena = obj.maps["arena"]
    assert arena.user_vm_start == 1 << 44
    head = obj.bss["list_head"]
    assert arena.user_vm_start <= head < arena.user_vm_start + 10 * 4096
    assert arena.user_read_u64(head + 8) & 0xFFFF_FFFF == 9  # the last pushed value, in user memory
    count_at = arena.user_vm_start + 99 * 4096  # the arena globals: its last page
    assert arena.user_read_u64(count_at) & 0xFFFF_FFFF == 10
    r = obj.run("arena_list_sum")
    assert (r.status, r.ret, r.faults) == ("returned", 0, [])
    assert (obj.bss["list_sum"], obj.data["expected_count"]) == (45, 10)
    assert m.stream_text() == ""


def test_bss_state_is_kept_across_runs_of_two_programs():
    _, obj = load("arena_list")
    assert [obj.run("arena_list_add").ret for _ in range(3)] == [0, 0, 0]
    assert obj.run("arena_list_sum").ret == 0
    assert (obj.bss["list_sum"], obj.data["expected_count"]) == (135, 30)
    obj.bss["list_head"] = 0  # a skeleton's write is what the next run sees
    assert obj.run("arena_list_sum").ret == 0
    assert (obj.bss["list_sum"], obj.data["expected_count"]) == (0, 0)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_freed_page_reads_zero_through_the_extable(policy):
    m, obj = load("arena_faults", policy, "-mcpu=v4")
    r = obj.run("read_after_free")
    start = obj.maps["arena"].user_vm_start
    assert (r.status, r.ret) == ("returned", 0)
    assert obj.bss["freed_at"] == start  # the first page of a fresh arena
    if policy == "map-always":  # free puts the garbage page back: nothing faults, the read sees its zeroes
        assert r.faults == [] and m.stream_text() == ""
        return
    (f,) = r.faults
    assert (f.resolution, f.action, bool(f.cleared)) == ("extable", "skip", True)  # the load's destination
    assert f.address == obj.maps["arena"].kern_vm_start
    assert where(f) == line("arena_faults", "return *page;")
    assert report_head(m) == [f"ERROR: Arena READ access at unmapped address {start:#x}"]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("prog, ret, offset, text, access", [
    ("read_never_allocated", 7, 5 * 4096 + 12, "return *p + 7;", "READ"),
    ("read_below_start", 3, 0xFFFF_FFF8, "return *p + 3;", "READ"),  # (u32) wraps: the top of the 4 GiB window
    ("read_lower_guard", 3, -8, "return first[-1] + 3;", "READ"),  # a negative insn offset: the lower guard
])
def test_never_allocated_pages(policy, prog, ret, offset, text, access):
    m, obj = load("arena_faults", policy, "-mcpu=v4")
    arena = obj.maps["arena"]
    r = obj.run(prog)
    assert (r.status, r.ret) == ("returned", ret)
    if policy == "map-always":
        assert r.faults == [] and m.stream_text() == ""
        return
    (f,) = r.faults
    assert (f.resolution, f.action) == ("extable", "skip")
    assert f.address == arena.kern_vm_start + offset
    assert where(f) == line("arena_faults", text)
    user = (arena.user_vm_start + offset) % (1 << 64)
    assert report_head(m) == [f"ERROR: Arena {access} access at unmapped address {user:#x}"]


@pytest.mark.parametrize("policy", POLICIES)
def test_a_write_to_an_unallocated_page_is_dropped(policy):
    m, obj = load("arena_faults", policy, "-mcpu=v4")
    r = obj.run("write_never_allocated")
    user = obj.maps["arena"].user_vm_start + 6 * 4096
    if policy == "map-always":  # the garbage page keeps the store
        assert (r.ret, r.faults) == (1, [])
        return
    assert r.ret == 0
    assert [(f.resolution, f.action, bool(f.cleared), where(f)) for f in r.faults] == [
        ("extable", "skip", False, line("arena_faults", "*p = 1;")),
        ("extable", "skip", True, line("arena_faults", "return *p;"))]
    assert report_head(m) == [f"ERROR: Arena WRITE access at unmapped address {user:#x}",
                              f"ERROR: Arena READ access at unmapped address {user:#x}"]


def test_sixty_four_pages_with_sign_extending_loads():
    m, obj = load("arena_faults", "scratch", "-mcpu=v4")
    code = obj.programs["many_pages_signed"].linked.insns
    ops = {code[i] for i in range(0, len(code), 8)}
    assert {0x91, 0x89, 0x81} <= ops  # LDX MEMSX B, H, W: clang's -mcpu=v4 sign-extending loads
    r = obj.run("many_pages_signed")
    assert (r.status, r.ret, r.faults) == ("returned", 2**32 - 64, [])  # (s8)-64, as BPF_PROG_TEST_RUN's u32
    assert s64(obj.bss["signed_sum"]) == sum(-i - 1 - 300 * i - 1 - 30_000_000 * i - 1 for i in range(64))
    assert s64(obj.bss["signed_sum"]) == -60_480_607_008
    arena = obj.maps["arena"]
    last = arena.user_vm_start + 63 * 4096
    assert arena.user_read(last, 8) == struct.pack("<bxhi", -64, -18_901, -1_890_000_001)
    assert m.stream_text() == ""


def test_static_and_global_subprograms_take_arena_pointers():
    _, obj = load("arena_faults", "scratch", "-mcpu=v4")
    assert obj.programs["subprog_args"].linked.names == ("subprog_args", "sum_static", "sum_global")
    r = obj.run("subprog_args")
    assert (r.status, r.ret, r.faults) == ("returned", 136 * 1000 + 100, [])


@pytest.mark.parametrize("policy", POLICIES)
def test_atomics_on_arena_globals_and_pages(policy):
    _, obj = load("arena_rmw", policy)
    r = obj.run("rmw_global")
    assert (r.ret, r.faults) == (200, [])
    old = ("old_add", "old_xchg", "old_cmpxchg", "failed_cmpxchg")
    assert [obj.bss[k] for k in old] == [11, 16, 100, 200]  # 10 +1, +5, xchg 100, cmpxchg 100 -> 200, 7 fails
    r = obj.run("rmw_page")
    assert (r.ret, r.faults) == (200, [])
    assert [obj.bss[k] for k in old] == [4, 9, 100, 200]


@pytest.mark.parametrize("policy", POLICIES)
def test_atomics_on_an_unallocated_page_are_skipped_and_clear_nothing(policy):
    m, obj = load("arena_rmw", policy)
    r = obj.run("rmw_unallocated")
    old = [obj.bss[k] for k in ("old_add", "old_xchg", "old_cmpxchg", "failed_cmpxchg")]
    if policy == "map-always":  # the garbage page is zero: 0 +1 +5, ...
        assert (r.ret, r.faults, old) == (200, [], [1, 6, 100, 200])
        return
    # each fetch leaves its source register (or r0 for cmpxchg) as it was: the operand comes back
    assert (r.ret, old) == (0, [5, 100, 100, 7])
    assert [(f.resolution, f.action, bool(f.cleared)) for f in r.faults] == [("extable", "skip", False)] * 5 + [
        ("extable", "skip", True)]
    user = obj.maps["arena"].user_vm_start + 2 * 4096 + 16
    assert report_head(m) == [f"ERROR: Arena WRITE access at unmapped address {user:#x}"] * 5 + [
        f"ERROR: Arena READ access at unmapped address {user:#x}"]
    assert [where(f) for f in r.faults] == [line("arena_rmw", s) for s in (
        "__sync_fetch_and_add(p, 1);", "old_add =", "old_xchg =", "old_cmpxchg =", "failed_cmpxchg =",
        "return *p;")]


def test_x86_refuses_a_fetching_and_on_the_arena():
    """__sync_fetch_and_and is BPF_AND | BPF_FETCH even with its result unused; x86 has no JIT for it
    on an arena (bpf_jit_supports_insn()), so check_atomic() refuses it, and with it the object."""
    with pytest.raises(VerifierError, match=r"^prog and: insn 5: BPF_ATOMIC stores into R1 arena is not allowed "
                                        r"\(.*arena_atomics\.bpf\.c:31: __sync_fetch_and_and") as e:
        load("arena_atomics")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_kfunc_gets_the_rebased_arena_pointer(policy):
    _, obj = load("arena_kfunc", policy, kfuncs=True)
    r = obj.run("kfunc_read_allocated")
    assert (r.status, r.ret, r.faults) == ("returned", 0x1234, [])


@pytest.mark.parametrize("policy", POLICIES)
def test_a_kfunc_faulting_on_an_unallocated_page(policy):
    m, obj = load("arena_kfunc", policy, kfuncs=True)
    arena = obj.maps["arena"]
    r = obj.run("kfunc_read_unallocated")
    kaddr = arena.kern_vm_start + 3 * 4096 + 0x18  # the kfunc's %rdi: kern_vm_start + (u32)ptr
    if policy == "map-always":
        assert (r.status, r.ret, r.faults) == ("returned", 0, [])
        return
    (f,) = r.faults
    assert (f.address, f.where) == (kaddr, "bpf_kfunc_arena_read_u64+0x4/0x10")
    assert f.source is None  # the assembly kfunc has no debug info: its caller's C line is in the report
    if policy == "oops":
        assert (r.status, f.resolution, f.action) == ("oops", "oops", "stop")
        assert r.oops.splitlines()[0] == f"BUG: unable to handle page fault for address: {kaddr:016x}"
        assert "RDI: " + f"{kaddr:016x}" in r.oops and m.stream_text() == ""
        return
    assert (r.status, r.ret, f.resolution, f.action, f.completed) == ("returned", 0, "scratch", "restart", True)
    page = arena.user_vm_start + 3 * 4096  # the scratch report names the page, not the byte
    text = m.stream_text().splitlines()
    assert report_head(m) == [f"ERROR: Arena READ access at unmapped address {page:#x}"]
    source = "return bpf_kfunc_arena_read_u64((__u64 *)p);"
    assert f"  {source} @ {line('arena_kfunc', source)}" in text


def test_bpf_loop_is_inlined_and_its_callback_sees_the_callers_ctx():
    """optimize_bpf_loop(): the count is the callbacks run, the one returning 1 included; R6..R8 survive."""
    _, obj = load("arena_loop")
    obj.bss["kept_a"], obj.bss["kept_b"] = 7, 11
    r = obj.run("loop_sum")
    assert (r.status, r.ret, r.faults) == ("returned", 41 * 100000 + sum(range(40)), [])
    assert (obj.bss["kept_a"], obj.bss["kept_b"]) == (21, 16)
    assert obj.run("loop_too_many").ret == 2**32 - 7  # -E2BIG past BPF_MAX_LOOPS, the callback never called


def test_bpf_loop_allocates_arena_pages_from_its_callback():
    _, obj = load("verifier_arena")
    r = obj.run("alloc_in_a_loop")
    assert (r.status, r.ret, r.faults) == ("returned", 2, [])
    arena = obj.maps["arena"]
    assert [arena.user_read(arena.user_vm_start + k * 4096, 1) for k in range(2)] == [b"\0", b"\1"]


def test_a_bpf_loop_the_verifier_cannot_inline_is_refused():
    with pytest.raises(VerifierError, match=r"^prog loop_flags_unknown: insn 7: bpf_loop: only the inlined form is "
                                        r"modelled .*arena_loop_flags\.bpf\.c:16: return bpf_loop") as e:
        load("arena_loop_flags")
    assert "\n" not in str(e.value)


def test_a_fault_in_a_bpf_loop_callback_is_reported_to_the_main_program():
    """bpf_prog_report_arena_violation() reports to main_prog_aux's stream (selftest stream_arena_callback_fault)."""
    m, obj = load("arena_loop")
    r = obj.run("loop_callback_fault")
    assert (r.status, r.ret) == ("returned", 2)  # each call: 0 read + 1
    assert [(f.resolution, where(f)) for f in r.faults] == [
        ("extable", line("arena_loop", "*(int *)ctx += *p + 1;"))] * 2
    main = m.progs.by_name["loop_callback_fault"].stream_read(BPF_STDERR).decode()
    assert m.progs.by_name["read_missing"].stream_read(BPF_STDERR) == b""
    user = obj.maps["arena"].user_vm_start + 3 * 4096
    report = main.split("\n\n")[0].splitlines()
    assert report[0] == f"ERROR: Arena READ access at unmapped address {user:#x}"
    assert [s.split("_", 3)[-1] for s in report[3:7:2]] == ["read_missing+0x24/0x3a", "loop_callback_fault+0x73/0x97"]
    assert report[4:7:2] == [f"  *(int *)ctx += *p + 1; @ {line('arena_loop', '*(int *)ctx += *p + 1;')}",
                            f"  bpf_loop(2, read_missing, &n, 0); @ {line('arena_loop', 'bpf_loop(2, read_missing')}"]
    assert main.count("ERROR") == 2


@pytest.mark.parametrize("policy", POLICIES)
def test_32_bit_atomics_wrap_and_zero_extend(policy):
    m, obj = load("arena_rmw", policy)
    old = ("old32_add", "old32_xchg", "old32_cmpxchg")
    r = obj.run("rmw32_page")
    assert (r.ret, r.faults) == (1, [])
    assert [obj.bss[k] for k in old] == [0xFFFF_FFFE, 3, 0xFFFF_FFF0]  # 0xfffffffe + 5 wraps to 3
    r = obj.run("rmw32_unallocated")
    if policy == "map-always":
        assert (r.ret, r.faults, [obj.bss[k] for k in old]) == (0x8000_0001, [], [0, 5, 0xFFFF_FFF0])
        return
    # skipped: the operands stay, and cmpxchg's R0 is still zero-extended after the fixup
    assert (r.ret, [obj.bss[k] for k in old]) == (0, [5, 0xFFFF_FFF0, 0xFFFF_FFF0])
    assert [(f.resolution, bool(f.cleared)) for f in r.faults] == [("extable", False)] * 3 + [("extable", True)]
    assert m.stream_text().count("ERROR: Arena WRITE") == 3


def test_a_chained_hash_table_in_the_arena_with_can_loop():
    """may_goto from `asm goto`, a global function returning an arena pointer, arena globals holding pointers."""
    _, obj = load("arena_hash", "scratch")
    r = obj.run("hash_fill_and_find")
    assert (r.status, r.ret, r.faults) == ("returned", 81, [])
    assert (obj.bss["found"], obj.bss["steps"]) == (81, 1)  # key 9 went in last, at its chain's head
    arena = obj.maps["arena"]
    heads = [arena.user_read_u64(arena.user_vm_start + 15 * 4096 + 8 * k) for k in range(8)]
    assert all(arena.user_vm_start <= h < arena.user_vm_start + 12 * 4096 for h in heads)


def test_can_loop_stops_after_bpf_max_loops():
    """The untimed may_goto: a per-frame count of BPF_MAX_LOOPS (the timed one of 2025 x86 kernels is not modelled)."""
    m = Machine(budget=0)  # 8M rounds are more than the default instruction budget
    obj = m.load_bpf(str(build("arena_hash")))
    r = obj.run("spin_forever")
    assert (r.status, r.ret) == ("returned", 8 * 1024 * 1024)


def test_bpf_loop_slots_go_past_a_full_512_byte_frame():
    """optimize_bpf_loop() runs after check_max_stack_depth(): its 24 bytes may take a frame past 512."""
    m, obj = load("arena_loop")
    r = obj.run("loop_full_stack")
    assert (r.status, r.ret, r.faults) == ("returned", 2**32 - 256, [])  # (s8) 0, 64, -128, -64, ... summed
    assert m.progs.by_name["loop_full_stack"].jited.frame_sizes == (512 + 24, 0)


@pytest.mark.parametrize("policy", POLICIES)
def test_kfuncs_with_two_arena_arguments_and_a_map(policy):
    """bpf_kfunc_arena_copy(dst__arena, src__arena) gets both rebased; list_sum's p__map is left as it is."""
    _, obj = load("arena_kfunc", policy, kfuncs=True)
    r = obj.run("kfunc_copy_and_sum")
    assert (r.status, r.ret, r.faults) == ("returned", 10 + 20 + 30 + 40, [])
    arena = obj.maps["arena"]
    copy = arena.user_vm_start + 4096
    assert [arena.user_read_u64(copy + 16 * k + 8) for k in range(4)] == [10, 20, 30, 40]


def test_a_stack_pointer_for_an_arena_kfunc_argument_is_refused():
    with pytest.raises(VerifierError, match=r"^prog stack_arg: insn \d+: R1 is not a pointer to arena or scalar\. "):
        load("bad_kfunc_stack_arg", kfuncs=True)


def test_a_kfunc_the_kernel_does_not_have_fails_the_load():
    with pytest.raises(LoadError, match=r"^extern \(func ksym\) 'bpf_kfunc_arena_\w+': not found in kernel or "
                                        r"module BTFs$"):
        load("arena_kfunc")  # kernel_stubs/arena_kfuncs.S not loaded


def test_rodata_is_frozen_after_load():
    """libbpf freezes .rodata once it holds its initial bytes: a skeleton cannot change a const volatile later."""
    _, obj = load("arena_list")
    assert obj.rodata["cnt_limit"] == 64
    with pytest.raises(MapError, match=r"^-EPERM: arena_li\.rodata is frozen \(bpf_map_freeze\(\) at load\): "
                                       r"'cnt_limit' is read-only$"):
        obj.rodata["cnt_limit"] = 3
    assert obj.rodata["cnt_limit"] == 64
    obj.data["expected_count"] = 7  # .data and .bss stay writable
    assert obj.data["expected_count"] == 7


def test_a_syscall_program_takes_its_arguments_in_ctx_and_hands_them_back():
    """BPF_PROG_TEST_RUN copies ctx_in to the kernel for R1, runs, and copies it back to ctx_out."""
    _, obj = load("arena_ctx")
    arena = obj.maps["arena"]
    r = obj.run("alloc_n", ctx=struct.pack("<IiQ", 3, -5, 0))
    assert (r.status, r.ret, r.faults) == ("returned", 0, [])
    assert struct.unpack("<IiQ", obj.ctx_out) == (3, -5, arena.user_vm_start)  # the program's write
    assert [arena.user_read(arena.user_vm_start + k * 4096, 4) for k in range(3)] == [
        struct.pack("<i", v) for v in (-5, -4, -3)]
    r = obj.run("alloc_n", ctx=struct.pack("<IiQ", 9, 0, 0))  # more pages than the arena's 8: NULL
    assert (r.ret, obj.ctx_out) == (2**32 - 12, struct.pack("<IiQ", 9, 0, 0))


def test_a_callback_taken_at_five_sites_is_appended_once():
    """bpf_object__reloc_code() appends a subprogram once however often it is referenced; clang unrolled the
    can_loop loop into five bpf_loop() calls, and may_goto's counter sits below the loop's spill slots."""
    m, obj = load("arena_loop")
    linked = obj.programs["loops_in_can_loop"].linked
    assert linked.names == ("loops_in_can_loop", "add_index")
    assert len(linked.insns) // 8 == linked.subprogs[1] + 6  # add_index's 6 instructions, once
    r = obj.run("loops_in_can_loop")
    assert (r.status, r.ret) == ("returned", 5 * (0 + 1 + 2 + 3) * 100 + (0 + 1 + 2 + 3 + 4))
    assert m.progs.by_name["loops_in_can_loop"].jited.frame_sizes == (8 + 24 + 8, 0)


@pytest.mark.parametrize("a, b, c, quot, rem, ext, swapped", [
    (-7, 2, 0x1280, -3, -1, -128 + 0x12, 0xF9FF_FFFF_7FED_FFFF),
    (-(1 << 63), -1, -1, -(1 << 63), 0, -2, 0xFFFF_FF7F),  # sdiv by -1 is a negation, smod by -1 is 0
    (5, 0, 0x7FFF, 0, 5, -1 + 0x7F, 0x0500_0000_FF7F_0000),  # by 0: the quotient is 0, the remainder a
    (-5, 0, 0, 0, -5, 0, 0xFBFF_FFFF_FFFF_FFFF),
])
def test_v4_alu_on_arena_values(a, b, c, quot, rem, ext, swapped):
    _, obj = load("arena_alu", "scratch", "-mcpu=v4")
    r = obj.run("alu_v4", ctx=struct.pack("<qqi4x", a, b, c))
    assert (r.status, r.ret, r.faults) == ("returned", (quot + rem) & 0xFFFF_FFFF, [])
    assert [s64(obj.bss[k]) for k in ("quot", "rem", "ext")] == [quot, rem, ext]
    assert obj.bss["swapped"] == swapped


def test_two_objects_with_an_arena_named_arena_in_one_machine():
    """Map names are not unique in the kernel: each object keeps its own arena, kern_vm area and r12."""
    m = Machine()
    lists = m.load_bpf(str(build("arena_list")))
    faults = m.load_bpf(str(build("arena_faults", "-mcpu=v4")))
    first, second = lists.maps["arena"], faults.maps["arena"]
    assert first is not second and first.kern_vm_start != second.kern_vm_start
    assert (lists.run("arena_list_add").ret, lists.run("arena_list_sum").ret, lists.bss["list_sum"]) == (0, 0, 45)
    r = faults.run("read_never_allocated")
    assert r.ret == 7 and [f.address for f in r.faults] == [second.kern_vm_start + 5 * 4096 + 12]
    assert m.arena is second  # what is loaded next uses the latest


def test_a_co_re_relocation_is_refused_naming_it_and_its_instruction():
    from bpf_build import build

    from emu.bpf.object_load import LoadError

    with pytest.raises(LoadError) as e:
        Machine().load_bpf(str(build("core")))
    assert str(e.value) == ("prog core_read: insn 0: CO-RE relocation byte_off of type 2 (0:1) is not supported: "
                            "build without CO-RE (no preserve_access_index)")


def test_assert_fault_at_names_what_differs():
    from bpf_build import build

    from emu.testing import assert_fault_at

    m = Machine()
    result = m.load_bpf(str(build("use_after_free"))).run("use_after_free")
    assert assert_fault_at(result, "bpf_c/use_after_free.bpf.c:21", resolution="extable").action == "skip"
    with pytest.raises(AssertionError, match=r"^fault #1 at use_after_free.bpf.c:21 <bpf_prog_[0-9a-f]{16}_use_after_"
                                             r"free\+0x[0-9a-f]+/0x[0-9a-f]+>: it was resolved by extable, not "
                                             r"scratch\n"):
        assert_fault_at(result, "use_after_free.bpf.c:21", resolution="scratch")
    with pytest.raises(AssertionError, match=r"^expected a fault at use_after_free.bpf.c:20, but none happened"):
        assert_fault_at(result, "use_after_free.bpf.c:20")


def test_assert_fault_at_finds_a_kfunc_fault_by_the_c_line_that_called_it():
    from emu.corpus import bpf_prog
    from emu.testing import assert_fault_at

    m = Machine()
    m.load(str(stub("arena_kfuncs.S")))
    result = m.load_bpf(str(bpf_prog("off_by_one.bpf.o"))).run("off_by_one")
    store, kfunc = result.faults
    assert assert_fault_at(result, "off_by_one.bpf.c:20", resolution="extable", action="skip") is store
    assert kfunc.source is None and kfunc.where == "bpf_kfunc_arena_read_u64+0x4/0x10"
    assert assert_fault_at(result, "off_by_one.bpf.c:21", resolution="scratch", action="restart") is kfunc
    with pytest.raises(AssertionError, match=r"^expected a fault at off_by_one.bpf.c:19, but none happened"):
        assert_fault_at(result, "off_by_one.bpf.c:19")


def test_an_xdp_program_reads_and_writes_its_packet_through_xdp_md():
    """bpf_prog_test_run_xdp(): xdp_md's data and data_end, converted to xdp_buff's pointers by the
    verifier, bound the packet; the action comes back in r0 and the packet as the program left it."""
    from bpf_build import build

    obj = Machine().load_bpf(str(build("xdp_parse")))
    assert obj.run("xdp_mark", data=bytes([1, 2, 3, 4])).ret == 2  # XDP_PASS
    assert (obj.data_out, obj.bss["seen_len"]) == (bytes([1, 0x42, 3, 4]), 4)
    assert obj.run("xdp_mark", data=bytes([0xFF, 2, 3])).ret == 1  # XDP_DROP, the packet untouched
    assert obj.data_out == bytes([0xFF, 2, 3])
    assert obj.run("xdp_mark", data=b"\x01").ret == 1  # shorter than the bounds check allows
    xdp_md_load = next(insn for insn in decode(obj.programs["xdp_mark"].linked.insns)
                       if insn.code == 0x61 and insn.src == 1)  # ldxw from the ctx, as clang wrote it
    assert xdp_md_load.off in (0, 4)


def test_a_tc_program_reads_and_writes_its_packet_through_sk_buff():
    from bpf_build import build

    obj = Machine().load_bpf(str(build("tc_parse")))
    assert obj.run("tc_mark", data=bytes([1, 2, 3, 4, 5])).ret == 0  # TC_ACT_OK
    assert (obj.data_out, obj.bss["seen_len"]) == (bytes([1, 0x42, 3, 4, 5]), 5)
    assert obj.run("tc_mark", data=bytes([0xFF, 2])).ret == 2  # TC_ACT_SHOT


def test_a_context_field_that_is_not_modelled_is_refused_by_name(tmp_path):
    from emu.tools.build import build_bpf

    src = tmp_path / "mark.bpf.c"
    src.write_text('#include "bpf_arena_common.h"\nstruct __sk_buff { __u32 len, pkt_type, mark; };\n'
                   'SEC("tc") int read_mark(struct __sk_buff *skb) { return skb->mark; }\n'
                   'char _license[] SEC("license") = "GPL";\n')
    with pytest.raises(VerifierError, match=r"^prog read_mark: insn 0: __sk_buff access at off=8 size=4 is not "
                                            r"modelled: only loads of len, data, data_end, data_meta are"):
        Machine().load_bpf(str(build_bpf(src)))
