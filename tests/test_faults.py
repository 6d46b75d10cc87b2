"""Page faults on a real CPU: vector 14, error codes, fixups, restarts, oopses."""

import pytest

from emu import Machine
from emu.errors import EmuError
from emu.kernel.events import COMPLETED, FIXUP, PROGRESSED, RESTART, STOP
from emu.mm.layout import PAGE_SIZE, THREAD_SIZE, stack_top
from emu.x86.fault import OopsHandler
from emu.x86.pgtable import PAGE_KERNEL, mk_pte

HOLE = 0xFFFF_C900_4000_0000  # never mapped

FAULT_LOOP = """
/* Each iteration faults three times: a read, a write, an instruction fetch.
 * Every one has an _ASM_EXTABLE entry, so every one continues at its fixup. */
    .set HOLE_TEXT, 0xffffffffc0000000
SYM_FUNC_START(fault_loop)            /* rdi = iterations, rsi = an unmapped address */
    push %rbp
    mov %rsp, %rbp
1:
2:  mov (%rsi), %rax
    _ASM_EXTABLE(2b, 3f)
3:
4:  movq $1, (%rsi)
    _ASM_EXTABLE(4b, 5f)
5:  movabs $HOLE_TEXT, %rax
    call *%rax
6:  dec %rdi
    jnz 1b
    pop %rbp
    ret
7:  add $8, %rsp                      /* the call's return address */
    jmp 6b
    _ASM_EXTABLE(HOLE_TEXT, 7b)
SYM_FUNC_END(fault_loop)
"""


def test_1000_consecutive_faults_each_arrive_as_vector_14_with_the_right_error_code(machine):
    machine.load_source(FAULT_LOOP)
    result = machine.call("fault_loop", 334, HOLE)
    assert result.status == "returned"
    assert len(result.faults) == 1002
    assert {e.vector for e in result.faults} == {14}  # never promoted to #DF (Unicorn issue 1883)
    assert [e.error_code.value for e in result.faults] == [0x0, 0x2, 0x10] * 334
    assert [e.address for e in result.faults[:3]] == [HOLE, HOLE, 0xFFFF_FFFF_C000_0000]
    assert {(e.resolution, e.handler, e.action) for e in result.faults} == {("extable", "ex_handler_default", FIXUP)}


def test_extable_fixup_event_tells_the_whole_story(stubs):
    buf = stubs.vmalloc(PAGE_SIZE)
    result = stubs.call("copy_from_kernel_nofault", buf, HOLE, 16)
    assert result.ret_signed == -14
    (e,) = result.faults
    load = stubs.symbol("copy_from_kernel_nofault") + 0xA
    assert (e.rip, e.where, e.insn) == (load, "copy_from_kernel_nofault+0xa/0x50", "movq (%rsi), %rax")
    assert (e.address, e.error_code.value, e.error_code.access) == (HOLE, 0, "read")
    assert e.pte_before == e.pte_after == 0
    assert e.resume_at == stubs.symbol("copy_from_kernel_nofault") + 0x36
    assert e.steps == [
        "handle_page_fault: kernel address -> do_kern_addr_fault",
        "spurious_kernel_fault: no",
        "bad_area_nosemaphore -> kernelmode_fixup_or_oops",
        f"fixup_exception: EX_TYPE_DEFAULT entry {load:#x} -> {e.resume_at:#x} "
        "<copy_from_kernel_nofault+0x36/0x50>",
        f"ex_handler_default: regs->ip = {e.resume_at:#x}",
    ]
    assert e.completed is None  # not restarted: nothing to complete


def map_on_fault(machine):
    """A KFENCE-like slot in page_fault_oops(): map the page, let the instruction retry."""
    def handle(address, is_write, ip):
        machine.map(address & ~(PAGE_SIZE - 1))
        return True
    machine.oops_handlers.append(OopsHandler("map_on_fault", "mapped", handle))


def test_rep_movsb_that_faults_half_way_resumes_with_its_partial_progress(stubs):
    map_on_fault(stubs)
    src = stubs.vmalloc(2 * PAGE_SIZE)
    data = bytes((i * 7 + 3) & 0xFF for i in range(0x1800))
    stubs.write(src, data)
    dst = stubs.vmalloc(PAGE_SIZE) + 0x800  # the copy runs off the end into an unmapped page
    result = stubs.call("memcpy", dst, src, 0x1800)
    assert result.status == "returned" and result.ret == dst
    (e,) = result.faults
    assert e.insn == "rep movsb (%rsi), (%rdi)"
    assert e.rip == stubs.symbol("memcpy") + 6
    assert e.address == dst + 0x800 and e.error_code.value == 0x2
    assert e.rcx == 0x1000  # 0x800 bytes were copied before the fault
    assert (e.resolution, e.action, e.restarted) == ("mapped", RESTART, True)
    assert e.pte_before == 0 and e.pte_after & 0xFFF == 0x063
    assert e.retry == COMPLETED and e.completed is True
    assert stubs.read(dst, 0x1800) == data


def test_rep_movsb_across_three_unmapped_pages_restarts_once_per_page(stubs):
    map_on_fault(stubs)
    src = stubs.vmalloc(4 * PAGE_SIZE)
    data = bytes(range(256)) * 48
    stubs.write(src, data)
    dst = 0xFFFF_C900_5000_0000
    result = stubs.call("memcpy", dst, src, len(data))
    assert result.status == "returned"
    assert [e.address for e in result.faults] == [dst, dst + PAGE_SIZE, dst + 2 * PAGE_SIZE]
    assert [e.rcx for e in result.faults] == [len(data), len(data) - PAGE_SIZE, len(data) - 2 * PAGE_SIZE]
    assert [e.retry for e in result.faults] == [PROGRESSED, PROGRESSED, COMPLETED]
    assert stubs.read(dst, len(data)) == data


def test_a_restarted_instruction_that_faults_again_is_refaulted_not_completed(machine):
    """A handler that claims success without fixing anything: the retry faults at the same place."""
    machine.load_source("SYM_FUNC_START(rd)\n mov (%rdi), %rax\n ret\n")
    calls = []

    def lie(address, is_write, ip):
        calls.append(address)
        return len(calls) < 3

    machine.oops_handlers.append(OopsHandler("liar", "claimed", lie))
    result = machine.call("rd", HOLE)
    assert result.status == "oops"
    assert [e.retry for e in result.faults] == ["refaulted", "refaulted", None]
    assert [e.action for e in result.faults] == [RESTART, RESTART, STOP]


def test_a_null_dereference_gives_the_kernels_oops_and_stops_the_call(stubs):
    result = stubs.call("list_count", 0)
    assert result.status == "oops" and result.ret is None
    lines = result.oops.splitlines()
    rip = stubs.symbol("list_count") + 6
    assert lines[:5] == [
        "BUG: kernel NULL pointer dereference, address: 0000000000000000",
        "#PF: supervisor read access in kernel mode",
        "#PF: error_code(0x0000) - not-present page",
        "PGD 0",
        "Oops: Oops: 0000 [#1] SMP PTI",
    ]
    assert lines[5] == "CPU: 0 UID: 0 PID: 1 Comm: arena-emu Not tainted 7.1.0-arena-emu #1"
    assert lines[7] == "RIP: 0010:list_count+0x6/0x20"
    assert lines[8].endswith("55 48 89 e5 31 c0 <48> 8b 17 48 39 fa 74 08 48 ff c0 48 8b 12 eb f3 5d c3 90 90 90 90")
    assert lines[9] == f"RSP: 0018:{stack_top(0) - 16:016x} EFLAGS: 00000046"
    assert lines[11] == "RDX: 0000000000000000 RSI: 0000000000000000 RDI: 0000000000000000"
    assert lines[17] == "CR2: 0000000000000000 CR3: 0000000000001000 CR4: 0000000000050220"
    assert lines[18:] == ["Call Trace:", " <TASK>", " emu_call_return+0x0/0x10", " </TASK>",
                          "Modules linked in:", "CR2: 0000000000000000", "---[ end trace 0000000000000000 ]---"]
    (e,) = result.faults
    assert (e.rip, e.resolution, e.action, e.report) == (rip, "oops", STOP, result.oops)


def test_a_wild_kernel_pointer_oopses_with_its_address_and_page_walk(stubs):
    head = stubs.vmalloc(PAGE_SIZE)
    stubs.write_u64(head, 0xFFFF_8880_1234_5678)  # head->next
    result = stubs.call("list_count", head)
    assert result.oops.splitlines()[:5] == [
        "BUG: unable to handle page fault for address: ffff888012345678",
        "#PF: supervisor read access in kernel mode",
        "#PF: error_code(0x0000) - not-present page",
        "PGD 0",
        "Oops: Oops: 0000 [#1] SMP PTI",
    ]
    assert "RIP: 0010:list_count+0x11/0x20" in result.oops


def test_oopses_are_numbered_like_the_kernels_die_counter(stubs):
    assert "[#1]" in stubs.call("list_count", 0).oops
    assert "[#2]" in stubs.call("list_count", 8).oops


def test_a_write_to_read_only_text_is_a_permissions_violation(machine):
    machine.load_source("SYM_FUNC_START(poke)\n movb $0, poke(%rip)\n ret\n")
    lines = machine.call("poke").oops.splitlines()
    assert lines[1:3] == ["#PF: supervisor write access in kernel mode",
                          "#PF: error_code(0x0003) - permissions violation"]


def test_executing_data_is_an_nx_violation(stubs):
    stubs.load_source("SYM_FUNC_START(jump)\n push %rbp\n mov %rsp, %rbp\n call *%rdi\n pop %rbp\n ret\n")
    result = stubs.call("jump", stubs.symbol("demo_list"))
    lines = result.oops.splitlines()
    assert lines[:4] == [
        "kernel tried to execute NX-protected page - exploit attempt? (uid: 0)",
        "BUG: unable to handle page fault for address: ffffffff82800000",
        "#PF: supervisor instruction fetch in kernel mode",
        "#PF: error_code(0x0011) - permissions violation",
    ]
    assert lines[lines.index("Call Trace:") + 2] == " ? jump+0x6/0x8"


def test_runaway_recursion_hits_the_stack_guard_page(machine):
    machine.load_source("SYM_FUNC_START(recurse)\n push %rbp\n mov %rsp, %rbp\n call recurse\n")
    result = machine.call("recurse")
    lo = stack_top(0) - THREAD_SIZE
    lines = result.oops.splitlines()
    hi = lo + THREAD_SIZE - 1
    assert lines[0] == f"BUG: TASK stack guard page was hit at {lo - 8:016x} (stack is {lo:016x}..{hi:016x})"
    assert lines[1] == "Oops: stack guard page: 0000 [#1] SMP PTI"
    assert result.faults[0].handler == "handle_stack_overflow"


def test_a_pte_naming_memory_beyond_guest_ram_is_a_reserved_bit_violation(stubs):
    va = stubs.vmalloc(PAGE_SIZE)
    stubs.set_pte(va, mk_pte(stubs.mem.nr_frames + 5, PAGE_KERNEL))
    result = stubs.call("list_count", va)
    assert result.status == "oops"
    assert result.oops.splitlines()[:3] == [
        f"BUG: unable to handle page fault for address: {va:016x}",
        "#PF: supervisor read access in kernel mode",
        "#PF: error_code(0x0009) - reserved bit violation",
    ]
    # The same access under an exception-table entry is fixed up, and the call goes on.
    fixed = stubs.call("get_kernel_nofault_u64", va)
    assert (fixed.status, fixed.ret, fixed.faults[0].resolution) == ("returned", 0, "extable")


def test_a_non_canonical_pointer_is_a_general_protection_fault(machine):
    machine.load_source("SYM_FUNC_START(rd)\n mov 8(%rdi), %rax\n ret\n")
    result = machine.call("rd", 0xDEAD_0000_0000_00F8)
    assert result.oops.splitlines()[0] == (
        "Oops: general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP PTI")
    assert result.faults[0].vector == 13


def test_ud2_is_the_kernels_bug_with_file_and_line(machine):
    machine.load_source("SYM_FUNC_START(check)\n test %rdi, %rdi\n jz 1f\n ud2\n1: ret\n", name="check.S")
    assert machine.call("check", 0).status == "returned"
    lines = machine.call("check", 1).oops.splitlines()
    assert lines[:2] == ["kernel BUG at check.S:4!", "Oops: invalid opcode: 0000 [#1] SMP PTI"]


def test_a_divide_error_under_an_extable_entry_is_fixed_up(machine):
    machine.load_source("""
SYM_FUNC_START(safe_div)          /* rdi / rsi, or -1 */
    mov %rdi, %rax
    xor %edx, %edx
1:  div %rsi
2:  ret
3:  mov $-1, %rax
    ret
    _ASM_EXTABLE(1b, 3b)
""")
    assert machine.call("safe_div", 42, 5).ret == 8
    result = machine.call("safe_div", 42, 0)
    assert result.ret_signed == -1
    assert (result.faults[0].vector, result.faults[0].resolution) == (0, "extable")


def test_a_runaway_loop_stops_at_the_instruction_budget(machine):
    machine.load_source("SYM_FUNC_START(spin)\n1: jmp 1b\n")
    result = machine.call("spin", budget=5000)
    assert result.status == "budget"
    assert result.insns == 5000
    assert result.error == f"instruction budget of 5000 exhausted at {machine.symbol('spin'):#x} <spin+0x0/0x2>"


def test_a_fault_loop_uses_up_the_budget_too(machine):
    """Every retry of a restarted instruction counts against the budget."""
    machine.load_source("SYM_FUNC_START(rd)\n mov (%rdi), %rax\n ret\n")
    machine.oops_handlers.append(OopsHandler("liar", "claimed", lambda a, w, ip: True))
    result = machine.call("rd", HOLE, budget=50)
    assert result.status == "budget"
    assert len(result.faults) == 50


def test_a_budget_must_not_be_negative(machine):
    with pytest.raises(EmuError, match=r"budget must be positive \(or 0 for none\), not -1"):
        machine.call("nothing", budget=-1)


def test_without_a_budget_the_time_limit_stops_a_runaway_and_instructions_go_uncounted(spin_file):
    m = Machine(budget=0, time_limit=0.2)
    m.load(spin_file)
    r = m.call("spin")
    assert (r.status, r.insns) == ("budget", None)
    assert r.error.startswith("no instruction budget, and the time limit of 0.2 s ran out at 0xffffffff8100000")
    m.load_source("SYM_FUNC_START(seven)\n mov $7, %eax\n ret\nSYM_FUNC_END(seven)\n")
    assert repr(m.call("seven")) == "<CallResult seven: returned ret=0x7, 0 fault(s), uncounted insns>"


def test_link_time_symbols_reach_every_load(machine):
    """The arena's constants are link-time symbols: the machine supplies them, files use them."""
    machine.link_symbols.update(ARENA_KERN_VM_START=0xFFFF_C900_0100_8000, ARENA_USER_VM_START=0x1_0000_0000)
    machine.load_source("SYM_FUNC_START(base)\n movabs $ARENA_KERN_VM_START, %rax\n ret\n"
                        "SYM_FUNC_START(ubase)\n movabs $ARENA_USER_VM_START + 8, %rax\n ret\n")
    assert machine.call("base").ret == 0xFFFF_C900_0100_8000
    assert machine.call("ubase").ret == 0x1_0000_0008
    assert machine.symbol("ARENA_KERN_VM_START") == 0xFFFF_C900_0100_8000


def test_a_fault_story_shows_the_instruction_now_at_rip_after_code_changes(machine):
    machine.load_source("SYM_FUNC_START(rd)\n mov (%rdi), %rax\n ret\n")
    assert machine.call("rd", 0).faults[0].insn == "movq (%rdi), %rax"
    rd = machine.symbol("rd")
    pa = machine.walk(rd).pa
    machine.mem.write(pa, bytes.fromhex("8b07"))  # mov (%rdi), %eax, patched in RAM behind the machine
    machine.write(machine.vmalloc(4096), b"x")  # any write through the machine drops decoded code
    machine.cpus[0].uc.ctl_flush_tb()
    assert machine.call("rd", 0).faults[0].insn == "movl (%rdi), %eax"
