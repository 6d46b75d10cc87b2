"""The fault path's decisions, without a CPU: a fake kernel to look at."""

from dataclasses import dataclass, field

from emu.kernel.events import COMPLETED, PROGRESSED, REFAULTED, FaultEvent, Observation, observe_retry
from emu.x86.extable import EX_TYPE_DEFAULT, ExtableEntry
from emu.x86.fault import OopsHandler, exc_page_fault, spurious_kernel_fault
from emu.x86.pgtable import PageWalk, WalkStage
from emu.x86.traps import ErrorCode

ADDR = 0xFFFF_C900_0040_0000
IP = 0xFFFF_FFFF_8100_0010


def present_walk(pte):
    stages = tuple(WalkStage(level, 0x1000, 0, entry) for level, entry in
                   (("PGD", 0x2067), ("P4D", 0x2067), ("PUD", 0x3067), ("PMD", 0x4067), ("PTE", pte)))
    return PageWalk(ADDR, 0x1000, stages, 0x5000 if pte & 1 else None, None if pte & 1 else "not-present PTE")


@dataclass
class FakeKernel:
    pte: int = 0
    extable: dict = field(default_factory=dict)
    oops_handlers: list = field(default_factory=list)
    guard: tuple | None = None

    def walk(self, va):
        return present_walk(self.pte)

    def symbolize(self, addr):
        return f"sym+{addr & 0xff:#x}/0x100"

    def search_exception_tables(self, ip):
        return self.extable.get(ip)

    def stack_guard(self, address):
        return self.guard


def test_not_present_fault_without_fixup_or_handler_is_an_oops():
    d = exc_page_fault(FakeKernel(), ADDR, ErrorCode(0), IP, user_mode=False)
    assert (d.resolution, d.action, d.handler) == ("oops", "stop", "page_fault_oops")
    assert d.oops_head == [
        f"BUG: unable to handle page fault for address: {ADDR:016x}",
        "#PF: supervisor read access in kernel mode",
        "#PF: error_code(0x0000) - not-present page",
        "PGD 2067 P4D 2067 PUD 3067 PMD 4067 PTE 0",
    ]


def test_the_exception_table_comes_before_the_handler_chain():
    calls = []
    k = FakeKernel(extable={IP: ExtableEntry(IP, IP + 0x20, EX_TYPE_DEFAULT)},
                   oops_handlers=[OopsHandler("kfence", "kfence", lambda *a: calls.append(a) or True)])
    d = exc_page_fault(k, ADDR, ErrorCode(0), IP, user_mode=False)
    assert (d.resolution, d.action, d.resume_at) == ("extable", "fixup", IP + 0x20)
    assert calls == []


def test_handlers_run_in_order_and_the_first_that_handles_it_wins():
    calls = []

    def handler(name, answer):
        return OopsHandler(name, name, lambda a, w, ip: calls.append((name, a, w, ip)) or answer)

    k = FakeKernel(oops_handlers=[handler("kfence", False), handler("arena", True), handler("never", True)])
    d = exc_page_fault(k, ADDR, ErrorCode(0x2), IP, user_mode=False)
    assert (d.resolution, d.action) == ("arena", "restart")
    assert calls == [("kfence", ADDR, True, IP), ("arena", ADDR, True, IP)]
    assert d.steps[-2:] == ["page_fault_oops: kfence() declined",
                            f"page_fault_oops: arena({ADDR:#x}, write) handled it -> return, the instruction restarts"]


def test_protection_faults_never_reach_the_handler_chain():
    k = FakeKernel(pte=0x8000_0000_0000_0021, oops_handlers=[OopsHandler("x", "x", lambda *a: True)])
    d = exc_page_fault(k, ADDR, ErrorCode(0x3), IP, user_mode=False)
    assert (d.resolution, d.oops_head[2]) == ("oops", "#PF: error_code(0x0003) - permissions violation")


def test_a_write_fault_the_tables_now_permit_is_spurious():
    k = FakeKernel(pte=0x8000_0000_0000_0063)  # RW now: a stale read-only TLB entry faulted
    d = exc_page_fault(k, ADDR, ErrorCode(0x3), IP, user_mode=False)
    assert (d.resolution, d.action) == ("spurious", "restart")


def test_spurious_check_is_only_for_write_prot_and_instr_prot():
    rw = present_walk(0x8000_0000_0000_0063)
    assert spurious_kernel_fault(ErrorCode(0x3), rw)
    assert not spurious_kernel_fault(ErrorCode(0x2), rw)  # not-present: never spurious
    assert not spurious_kernel_fault(ErrorCode(0x1), rw)  # read|prot: not a case the kernel checks
    assert not spurious_kernel_fault(ErrorCode(0x11), present_walk(0x8000_0000_0000_0063))  # NX still set
    assert spurious_kernel_fault(ErrorCode(0x11), present_walk(0x63))


def test_a_fault_in_the_stack_guard_page_is_a_stack_overflow():
    k = FakeKernel(guard=(0x10000, 0x14000))
    d = exc_page_fault(k, ADDR, ErrorCode(0x2), IP, user_mode=False)
    assert (d.handler, d.oops_what, d.oops_err) == ("handle_stack_overflow", "stack guard page", 0)


def test_kernel_access_to_a_user_address_goes_through_do_user_addr_fault():
    d = exc_page_fault(FakeKernel(), 0x10, ErrorCode(0), IP, user_mode=False)
    assert d.steps[0] == "handle_page_fault: user address -> do_user_addr_fault: no user mapping"
    assert d.oops_head[0] == "BUG: kernel NULL pointer dereference, address: 0000000000000010"


def event(rip=IP, address=ADDR, started=100, rcx=0, string_op=False):
    return FaultEvent(seq=1, cpu=0, vector=14, rip=rip, where="f", address=address, error_code=ErrorCode(0),
                      user_mode=False, walk_before=None, started=started, rcx=rcx, string_op=string_op,
                      action="restart")


def test_retry_outcomes_from_the_next_stop():
    e = event()
    assert observe_retry(e, Observation(IP + 3, 102, 0, None)) == COMPLETED
    assert observe_retry(e, Observation(IP, 101, 0, ADDR + 8)) == REFAULTED
    assert observe_retry(e, Observation(IP, 101, 0, ADDR + 0x1000)) == PROGRESSED  # page-crossing access
    assert observe_retry(e, Observation(IP, 900, 0, ADDR)) == COMPLETED  # retired, came back later
    assert observe_retry(e, Observation(0, 100, 0, None, returned=True)) == COMPLETED
    assert observe_retry(e, Observation(IP, 100, 0, None)) is None  # stopped before the retry


def test_a_rep_instruction_that_faults_again_further_on_progressed():
    e = event(rcx=0x1000, string_op=True)
    assert observe_retry(e, Observation(IP, 100 + 0x400 + 1, 0xC00, ADDR + 0x1000)) == PROGRESSED
    assert observe_retry(e, Observation(IP, 5000, 0x3000, ADDR + 0x1000)) == COMPLETED  # a fresh run of it


def test_the_event_repr_is_one_line_a_failing_assert_can_show():
    e = event()
    e.resolution, e.handler = "scratch", "bpf_arena_handle_page_fault"
    assert repr(e) == f"<FaultEvent #1 cpu0 #PF read {ADDR:#x} at f: scratch (restart)>"
