"""Which calls count their instructions, and how a call too long to count goes on uncounted."""

import json
import time

from emu import Machine
from emu.machine import COUNTED_PREFIX
from emu.tools.cli import main
from emu.x86.cpu import StopTimer
from emu.x86.fault import OopsHandler

LOOP = "SYM_FUNC_START(loop)\n xor %eax, %eax\n1: dec %rdi\n jnz 1b\n ret\nSYM_FUNC_END(loop)\n"  # 2n + 2


def test_a_counted_call_after_an_uncounted_one_counts_every_instruction():
    """Unicorn's count hook is only in code translated while it exists: code translated by an
    uncounted run must be translated again, or the next count would miss it."""
    with Machine() as m:
        m.load_source(LOOP, name="loop.S")
        assert m.call("loop", 1000, budget=50).insns == 50
        assert m.call("loop", 1000, budget=0).insns is None
        assert m.call("loop", 1000, budget=10**6).insns == 2002
        r = m.call("loop", 1000, budget=0)
        assert (r.status, r.insns) == ("returned", None)
        r = m.call("loop", 1000, budget=50)
        assert (r.status, r.insns) == ("budget", 50)


def test_by_default_a_short_call_counts_exactly_and_a_long_one_goes_uncounted():
    with Machine() as m:
        m.load_source(LOOP, name="loop.S")
        assert (m.budget, m.call("loop", 1000).insns) == (None, 2002)
        half = COUNTED_PREFIX // 2 - 1  # the ret is the prefix's last instruction
        assert repr(m.call("loop", half)) == f"<CallResult loop: returned ret=0x0, 0 fault(s), {COUNTED_PREFIX} insns>"
        r = m.call("loop", half + 1)
        assert repr(r) == "<CallResult loop: returned ret=0x0, 0 fault(s), uncounted insns>"
        assert (r.to_json()["insns"], r.after) == (None, "after an uncounted number of instructions")


def test_an_asked_budget_counts_past_the_prefix():
    with Machine(budget=10**6) as m:
        m.load_source(LOOP, name="loop.S")
        assert m.call("loop", 200_000).insns == 400_002
        r = m.call("loop", 10**6)
        assert (r.status, r.insns) == ("budget", 10**6)
        assert m.call("loop", 300_000, budget=0).insns is None


def test_by_default_a_runaway_is_counted_then_stopped_by_the_time_limit(spin_file):
    with Machine(time_limit=0.2) as m:
        m.load(spin_file)
        t = time.monotonic()
        r = m.call("spin")
        assert 0.2 <= time.monotonic() - t < 5
        assert (r.status, r.insns) == ("budget", None)
        assert r.error.startswith("no instruction budget past the first 100,000 instructions, and the time limit "
                                  "of 0.2 s ran out at 0xffffffff8100000")


def test_steps_count_by_default_and_a_resumed_call_counts_on_from_them():
    with Machine() as m:
        m.load_source(LOOP, name="loop.S")
        m.start_call("loop", 10)
        assert m.resume(5).insns == 5
        assert m.resume().insns == 22
        m.start_call("loop", COUNTED_PREFIX)
        assert m.resume(7).insns == 7
        r = m.resume()
        assert (r.status, r.insns) == ("returned", None)


def test_the_cli_says_when_instructions_were_not_counted(capsys, tmp_path):
    f = tmp_path / "loop.S"
    f.write_text(LOOP)
    assert main(["run", str(f), "--entry", "loop", "--arg", "100000"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == \
        "returned 0x0 (0) after an uncounted number of instructions, 0 fault(s)"
    assert main(["run", str(f), "--entry", "loop", "--arg", "100000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["insns"] is None
    assert main(["run", str(f), "--entry", "loop", "--arg", "100000", "--budget", "300000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["insns"] == 200_002


class _Engine:
    def __init__(self) -> None:
        self.stops = 0

    def emu_stop(self) -> None:
        self.stops += 1


def test_the_time_limit_stops_a_run_once_and_a_cancelled_one_stops_nothing():
    uc = _Engine()
    timer = StopTimer(uc, 0.01)
    timer._timer.join()
    assert (uc.stops, timer.fired) == (1, True)
    timer = StopTimer(uc, 0.01)
    timer.cancel()
    timer._timer.join()
    assert (uc.stops, timer.fired) == (1, False)


def test_the_time_limit_holds_in_the_counted_start_too():
    """A hundred thousand instructions that each take a fault would take seconds: the time
    limit stops them, and the count so far is exact."""
    with Machine(time_limit=0.2) as m:
        m.load_source("SYM_FUNC_START(f)\n1: mov (%rsi), %rax\n _ASM_EXTABLE(1b, 2f)\n2: jmp 1b\n")
        r = m.call("f", 0, 0xFFFF_C900_7000_0000)
        assert r.status == "budget" and 0 < len(r.faults) < COUNTED_PREFIX // 2
        assert r.error.startswith("no instruction budget, and the time limit of 0.2 s ran out at 0xffffffff8100000")
        assert abs(r.insns - 2 * len(r.faults)) <= 1  # each round: the load (its fault fixed up) and the jmp


def test_a_fault_restarted_in_the_counted_start_keeps_its_observed_retry():
    hole = 0xFFFF_C900_4000_0000
    with Machine() as m:
        m.load_source("SYM_FUNC_START(rd)\n mov (%rdi), %rax\n1: dec %rsi\n jnz 1b\n ret\n")
        m.oops_handlers.append(OopsHandler("mapper", "mapped", lambda a, _w, _ip: m.map(a & ~0xFFF) or True))
        r = m.call("rd", hole, COUNTED_PREFIX)
        assert (r.status, r.insns) == ("returned", None)
        (f,) = r.faults
        assert (f.resolution, f.action, f.retry) == ("mapped", "restart", "completed")
