"""Several CPUs: one memory, a TLB each, and deterministic interleavings."""

import pytest

from emu import Machine
from emu.errors import EmuError
from emu.mm.physmem import FrameKind
from emu.policy import Policy
from emu.tools.explore import Entry, Outcome, Scenario, Schedule, explore, run_schedule, sample, schedules
from emu.x86.pgtable import PAGE_KERNEL, mk_pte, pte_pfn

PAGE1 = "ARENA_KERN_VM_START + (ARENA_USER_VM_START & 0xffffffff) + 0x1000"
PAGE3 = "ARENA_KERN_VM_START + (ARENA_USER_VM_START & 0xffffffff) + 0x3000"
PAGE3_USER = 0x7F7D_2620_3000
RW = """
SYM_FUNC_START(rd)
	mov	(%rdi), %rax
	ret
SYM_FUNC_END(rd)
"""


def h3(policy: Policy | None = None) -> Scenario:
    return Scenario(("bpf_progs/smp.S",), (Entry(0, "h3_alloc"), Entry(1, "h3_reader")), policy=policy,
                    probe=PAGE1)


def test_a_cpu_that_was_not_flushed_still_reads_the_old_frame():
    m = Machine(cpus=2)
    m.load_source(RW)
    va = m.vmalloc(4096)
    m.write_u64(va, 1)
    assert m.call("rd", va, cpu=0).ret == m.call("rd", va, cpu=1).ret == 1  # both CPUs cache the translation
    pfn = m.mem.alloc_frame(FrameKind.DATA)
    m.mem.write_u64(pfn << 12, 2)
    m.set_pte(va, mk_pte(pfn, PAGE_KERNEL))
    m.invlpg(va, cpu=0)  # a local flush on CPU 0 only
    assert (m.call("rd", va, cpu=0).ret, m.call("rd", va, cpu=1).ret) == (2, 1)
    assert va in m.cpus[1].maybe_stale and va not in m.cpus[0].maybe_stale
    m.flush_tlb_kernel_range(va, va + 4096)  # a shootdown reaches every CPU
    assert m.call("rd", va, cpu=1).ret == 2 and not m.cpus[1].maybe_stale


def test_hazard_3_on_x86_the_store_after_allocation_is_lost_to_the_scratch_page():
    outcome, m = h3().run(Schedule.parse("1:@smp.S:34"))
    assert outcome.cpus == (("returned", 0x7F7D_2620_1000), ("returned", 0))
    assert (outcome.reports, outcome.probe) == (1, 0)  # the page CPU 0 allocated never saw the 7
    assert m.mem.read_u64(m.arena.scratch_pfn << 12) == 7  # it went to the scratch page


def test_hazard_3_with_the_flush_on_replace_knob_the_store_reaches_the_page():
    outcome, _ = h3(Policy("scratch", flush_on_replace=True)).run(Schedule.parse("1:@smp.S:34"))
    assert (outcome.reports, outcome.probe) == (1, 7)


def test_two_cpus_faulting_on_one_page_install_once_and_report_twice():
    sc = Scenario(("bpf_progs/smp.S",), (Entry(0, "fault_reader"), Entry(1, "fault_reader")))
    outcome, m = sc.run(Schedule.parse("0:@fault"))
    assert outcome.reports == 2 and [e.cpu for e in m.events] == [0, 1]
    assert [e.resolution for e in m.events] == ["scratch", "scratch"]
    page_steps = [s for e in m.events for s in e.steps if "bpf_arena_handle_page_fault" in s]
    assert len(page_steps) == 2
    assert m.events[0].pte_before == m.events[1].pte_before == 0  # both saw none when they faulted
    outcome, _ = sc.run(Schedule())
    assert outcome.reports == 1  # one after the other: the second CPU finds the scratch page mapped


def test_exploration_finds_both_cpus_reporting_one_fault_without_being_told_the_schedule():
    sc = Scenario(("bpf_progs/smp.S",), (Entry(0, "fault_reader"), Entry(1, "fault_reader")))
    result = explore(sc, schedules(sc, 2))
    assert {o.reports for o in result.outcomes} == {1, 2}
    both = next(o for o in result.outcomes if o.reports == 2)
    schedule, _count = result.outcomes[both]
    outcome, m = sc.run(schedule)
    assert outcome == both and [e.pte_before for e in m.events] == [0, 0]


def test_the_same_schedule_gives_the_same_run():
    a, ma = h3().run(Schedule.parse("1:7 0:3 1:@fault 0:*"))
    b, mb = h3().run(Schedule.parse("1:7 0:3 1:@fault 0:*"))
    assert a == b and [e.summary() for e in ma.events] == [e.summary() for e in mb.events]


def test_exploration_finds_the_lost_write_without_being_told_the_schedule():
    sc = h3()
    plan = list(schedules(sc, 2))
    result = explore(sc, iter(plan))
    lost = [o for o in result.outcomes if o.probe == 0]
    assert lost and result.runs == len(plan)
    schedule, _count = result.outcomes[lost[0]]
    assert sc.run(schedule)[0] == lost[0]  # the printed schedule replays it
    assert "replay: --schedule" in result.report()


def test_sampling_is_deterministic_for_a_seed():
    sc = h3()
    assert [str(s) for s in sample(sc, 20, seed=7)] == [str(s) for s in sample(sc, 20, seed=7)]
    assert [str(s) for s in sample(sc, 20, seed=7)] != [str(s) for s in sample(sc, 20, seed=8)]


def free_race(policy: Policy | None = None) -> Scenario:
    return Scenario(("bpf_progs/smp.S",),
                    (Entry(0, "race_free"), Entry(1, "race_alloc"), Entry(2, "race_access")),
                    setup=Entry(0, "race_setup"), cpus=3, policy=policy, probe=PAGE3)


def stale_write_lost(o: Outcome) -> bool:
    """CPU 1 got page 3 again and CPU 2 stored 7 after that, yet the page does not hold it."""
    return o.cpus[1] == ("returned", PAGE3_USER) and o.cpus[2] == ("returned", 0) and o.probe != 7


def test_a_free_can_be_preempted_between_returning_the_range_and_the_flush():
    m = free_race().start()
    page = m.arena.kern_addr(m.arena.user_vm_start + 0x3000)
    m.resume(7, cpu=2)  # CPU 2 has stored 1 through its translation of page 3
    m.preempt = lambda cpu, point: point == "free-before-flush"
    assert m.resume(cpu=0).status == "stopped"
    assert m.arena.rt.is_range_tree_set(3, 1)  # back in the allocator...
    assert m.pte(page) == 0 and page in m.cpus[2].maybe_stale  # ...but no CPU has flushed it yet


def test_free_race_a_store_through_a_stale_translation_lands_in_the_freed_page():
    sc = free_race()
    m = sc.start()
    old = pte_pfn(m.pte(m.arena.kern_addr(m.arena.user_vm_start + 0x3000)))
    run_schedule(m, Schedule.parse("2:7 0:@free-before-flush"), [0, 1, 2])
    outcome = sc.outcome(m)
    assert outcome == Outcome((("returned", 0), ("returned", PAGE3_USER), ("returned", 0)), 0, 0, 0, True)
    assert m.mem.read_u64(old << 12) == 7 and m.mem.kind(old) == FrameKind.FREE  # the 7 went to the freed page
    assert pte_pfn(m.pte(m.arena.kern_addr(m.arena.user_vm_start + 0x3000))) != old


def test_free_race_with_the_flush_before_release_knob_the_allocation_waits_for_the_flush():
    outcome, _ = free_race(Policy("scratch", flush_before_release=True)).run(
        Schedule.parse("2:7 0:@free-before-flush"))
    assert outcome.cpus == (("returned", 0), ("returned", 0), ("returned", 1))  # not free yet: NULL, no 7
    assert not stale_write_lost(outcome)


@pytest.mark.parametrize(("policy", "found"), [(None, True), (Policy("scratch", flush_before_release=True), False)])
def test_exploration_of_the_free_race_finds_the_stale_write_only_without_the_knob(policy, found):
    sc = free_race(policy)
    result = explore(sc, schedules(sc, 2))
    _, m = sc.run(Schedule())  # one CPU after the other: how long each runs alone
    ends = [m.results[c].insns + 2 for c in range(3)]  # any count, @fault or @free-before-flush
    assert result.runs == 1 + sum(ends) + sum(a * b for i, a in enumerate(ends) for j, b in enumerate(ends) if i != j)
    lost = [o for o in result.outcomes if stale_write_lost(o)]
    assert bool(lost) == found
    if found:
        schedule, _count = result.outcomes[lost[0]]
        assert str(schedule) == "2:7 0:@free-before-flush" and sc.run(schedule)[0] == lost[0]


def test_bad_schedules_are_refused():
    with pytest.raises(EmuError, match="bad schedule step 'x:1'"):
        Schedule.parse("0:1 x:1")
