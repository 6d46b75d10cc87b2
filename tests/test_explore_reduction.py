"""explore's partial-order reduction: the same outcomes as the exhaustive search, from far
fewer schedules; the same result from a process pool and from a Dask cluster."""

import io
import json
import re

import pytest

from emu.tools import cluster
from emu.tools.cli import main
from emu.tools.explore import Entry, Exploration, Outcome, Scenario, Schedule, Step, explore, schedules
from emu.tools.progress import Progress
from emu.tools.reduction import Node, full_space, probe, reduced, visit

PAGE1 = "ARENA_KERN_VM_START + (ARENA_USER_VM_START & 0xffffffff) + 0x1000"
PAGE3 = "ARENA_KERN_VM_START + (ARENA_USER_VM_START & 0xffffffff) + 0x3000"
PAGE1_USER, PAGE3_USER = 0x7F7D_2620_1000, 0x7F7D_2620_3000

RACES = {
    "hazard-3": Scenario(("bpf_progs/smp.S",), (Entry(0, "h3_alloc"), Entry(1, "h3_reader")), probe=PAGE1),
    "double-fault": Scenario(("bpf_progs/smp.S",), (Entry(0, "fault_reader"), Entry(1, "fault_reader"))),
    "free-race": Scenario(("bpf_progs/smp.S",),
                          (Entry(0, "race_free"), Entry(1, "race_alloc"), Entry(2, "race_access")),
                          setup=Entry(0, "race_setup"), cpus=3, probe=PAGE3),
}
LOST_WRITE = Outcome((("returned", 0), ("returned", PAGE3_USER), ("returned", 0)), 0, 0, 0, True)


@pytest.mark.parametrize("bound", [1, 2, 3])
@pytest.mark.parametrize("race", sorted(RACES))
def test_the_reduction_finds_exactly_the_outcomes_of_the_exhaustive_search(race, bound):
    sc = RACES[race]
    every = explore(sc, schedules(sc, bound), workers=2)
    kept = reduced(sc, bound)
    assert set(kept.outcomes) == set(every.outcomes)
    assert kept.space == every.runs and kept.runs < every.runs
    for outcome, (schedule, _count) in kept.outcomes.items():
        assert sc.run(schedule)[0] == outcome  # each printed schedule replays its outcome


def test_the_full_space_is_counted_without_listing_it():
    sc = RACES["free-race"]
    _, m = sc.run(Schedule())
    lengths = {c: m.results[c].insns for c in range(3)}
    for bound in (1, 2, 3):
        assert full_space(lengths, [0, 1, 2], bound) == sum(1 for _ in schedules(sc, bound))
    assert full_space({0: 13, 1: 24}, [0, 1], 3) == 16_812 and full_space({0: 13, 1: 24}, [0, 1], 4) == 321_012


def test_hazard_3_schedule_counts_per_bound():
    sc = RACES["hazard-3"]
    runs = {b: reduced(sc, b).runs for b in (1, 2, 3, 4)}
    assert runs == {1: 13, 2: 45, 3: 167, 4: 437}
    assert runs[3] * 20 <= 16_812  # the target at bound 3


def test_the_free_race_loses_the_write_within_a_tenth_of_the_exhaustive_schedules():
    result = reduced(RACES["free-race"], 2)
    assert result.space == 1429 and result.runs == 66
    assert LOST_WRITE in result.outcomes and result.first[LOST_WRITE] * 10 <= 1429
    schedule, _count = result.outcomes[LOST_WRITE]
    assert str(schedule) == "2:7 0:@free-before-flush"


def test_only_steps_that_end_after_a_visible_instruction_are_kept():
    """From the start of hazard 3: CPU 0 (h3_alloc) calls the allocator (its 9th instruction, the
    native kfunc) and stores to h3_allocated (11th); CPU 1 (h3_reader) reads page 1 in the kfunc
    (11th, a fault: its handler maps the scratch page; 12th, the load again) and then reads
    h3_allocated once per loop of 5 instructions; `1:1` stands for a step with none of these.
    CPU 0 ends inside its window, so no step to a point it never reaches is kept for it."""
    sc = RACES["hazard-3"]
    lengths = ((0, 13), (1, 24))
    v = visit(Node(sc, (), 4, lengths))
    assert " ".join(map(str, v.children)) == ("0:1 0:9 0:11 "
                                              "1:1 1:11 1:12 1:17 1:22 1:27 1:32 1:@fault 1:@free-before-flush")
    assert v.passes == {Step(0, 1), Step(1, 1)}  # each CPU's first instruction is a push to its own stack
    assert v.outcome == Outcome((("returned", PAGE1_USER), ("returned", 0)), 0, 0, 7, True)
    m = sc.start()
    m.preempt = lambda cpu, point: point == "fault"
    m.resume(cpu=1)  # stopped before the fault's handler: every count runs just the handler and one more
    m.preempt = None
    steps, visible = probe(m, 1, 24)
    assert [str(s) for s in steps] == ["1:1", "1:@fault"] and visible  # no other fault: @fault runs to the end
    assert 1 not in m.running_cpus()
    m.close()


def test_the_process_pool_gives_the_serial_result_in_the_same_order():
    sc = RACES["hazard-3"]
    serial = reduced(sc, 2)
    with cluster.local(2) as run:
        pooled = reduced(sc, 2, run)
    assert list(pooled.outcomes.items()) == list(serial.outcomes.items())
    assert (pooled.runs, pooled.first) == (serial.runs, serial.first)


def test_a_dask_cluster_gives_the_local_result_in_the_same_order():
    distributed = pytest.importorskip("distributed")
    sc = RACES["free-race"]
    local = reduced(sc, 2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", processes=True,
                                  dashboard_address=None) as lc, cluster.dask(lc.scheduler_address) as run:
        remote = reduced(sc, 2, run)
    assert list(remote.outcomes.items()) == list(local.outcomes.items())
    assert (remote.runs, remote.space, remote.first) == (local.runs, local.space, local.first)


def test_a_c_program_with_c_kfuncs_loses_an_update_and_the_reduction_finds_it(tmp_path):
    from emu.tools.build import build_bpf, build_kernel

    files = (str(build_kernel("kernel_stubs/arena_kfuncs_c.c")), "kernel_stubs/string.S",
             str(build_bpf("tests/bpf_c/race_increment.bpf.c")))
    sc = Scenario(files, (Entry(0, "increment"), Entry(1, "increment")), setup=Entry(0, "setup"))
    for bound, runs in ((1, (15, 73)), (2, (99, 2665))):
        every = explore(sc, schedules(sc, bound), workers=2)
        kept = reduced(sc, bound)
        assert set(kept.outcomes) == set(every.outcomes) and (kept.runs, every.runs) == runs
    assert {o.cpus for o in kept.outcomes} == {(("returned", 1), ("returned", 2)), (("returned", 2), ("returned", 1)),
                                               (("returned", 1), ("returned", 1))}  # the last: an update lost


def test_explore_json_has_the_counts(capsys):
    assert main(["explore", "bpf_progs/smp.S", "--entry0", "h3_alloc", "--entry1", "h3_reader", "--probe", PAGE1,
                 "--bound", "1", "--workers", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["bound"], out["reduction"], out["schedules"], out["space"]) == (1, "partial-order", 13, 42)
    assert sum(o["count"] for o in out["outcomes"]) == 13 and len(out["outcomes"]) == 5
    lost = next(o for o in out["outcomes"] if o["probe"] == 0 and o["cpus"][1]["ret"] == 0)
    assert lost["outcome"] == "cpu0 returned 0x7f7d26201000, cpu1 returned 0x0, 1 report, probe 0x0"
    assert lost["schedule"] == "1:12"


def test_explore_exhaustive_json(capsys):
    assert main(["explore", "bpf_progs/smp.S", "--entry0", "h3_alloc", "--entry1", "h3_reader",
                 "--bound", "1", "--workers", "1", "--exhaustive", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["reduction"], out["schedules"], out["space"]) == ("exhaustive", 42, None)


@pytest.mark.parametrize(("args", "message"), [
    (["--cluster", "tcp://127.0.0.1:1"], "--cluster tcp://127.0.0.1:1: no Dask scheduler there"),
    (["--cluster", "tcp://127.0.0.1:1", "--exhaustive"], "--cluster runs the reduced exploration"),
])
def test_explore_cluster_errors_are_one_line(capsys, args, message):
    pytest.importorskip("distributed")
    assert main(["explore", "bpf_progs/smp.S", "--entry0", "h3_alloc", "--entry1", "h3_reader", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_progress_draws_counts_and_clears_its_line():
    stream = io.StringIO()
    p = Progress(stream)
    p.start -= 1.0
    p._drawn -= 1.0
    result = Exploration(runs=40, space=822)
    result.add(Outcome((("returned", 0),), 0, 0), Schedule())
    p(result)
    assert re.fullmatch(r"\r41 schedules \(of 822\), 1 outcome\(s\), \d+/s ", stream.getvalue())
    p.done()
    assert stream.getvalue().endswith("\r\033[K")
