"""explore's rows of `python -m bench`: the partial-order reduction against the exhaustive search.

Hazard 3 (README, two CPUs) at bounds 1 to 4 and the free race (three CPUs) at bound 2,
reduced, on a process per core; the exhaustive search at the bounds given, in the same
run, for the ratios. The issue's figures for the exhaustive search at bounds 3 and 4
(16,812 schedules in 22 s, 321,012 in 474 s, on 2 cores) are the targets' baselines.
"""

from __future__ import annotations

import os
import statistics
import time

from emu.tools import cluster
from emu.tools.explore import Entry, Scenario, explore, schedules
from emu.tools.reduction import reduced

PAGE = "ARENA_KERN_VM_START + (ARENA_USER_VM_START & 0xffffffff) + {:#x}"
HAZARD_3 = Scenario(("bpf_progs/smp.S",), (Entry(0, "h3_alloc"), Entry(1, "h3_reader")), probe=PAGE.format(0x1000))
FREE_RACE = Scenario(("bpf_progs/smp.S",), (Entry(0, "race_free"), Entry(1, "race_alloc"), Entry(2, "race_access")),
                     setup=Entry(0, "race_setup"), cpus=3, probe=PAGE.format(0x3000))
ISSUE = {3: {"runs": 16_812, "s": 22.0}, 4: {"runs": 321_012, "s": 474.0}}  # exhaustive, 2 cores, issue 21
LOST_WRITE_CPUS = (("returned", 0), ("returned", 0x7F7D_2620_3000), ("returned", 0))


def _timed(fn, repeat: int) -> tuple[object, dict]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, {"median": statistics.median(times), "min": min(times), "max": max(times)}


def figures(repeat: int, exhaustive_bound: int = 2) -> dict:
    workers = os.cpu_count() or 1

    def reduce(sc: Scenario, bound: int):
        with cluster.local(workers) as run:
            return reduced(sc, bound, run)

    out: dict = {"workers": workers, "hazard_3": {}, "free_race": {}}
    for bound in (1, 2, 3, 4):
        r, t = _timed(lambda b=bound: reduce(HAZARD_3, b), repeat)
        out["hazard_3"][bound] = {"runs": r.runs, "space": r.space, "outcomes": len(r.outcomes), "s": t}
    for bound in range(1, exhaustive_bound + 1):
        e, t = _timed(lambda b=bound: explore(HAZARD_3, schedules(HAZARD_3, b), workers=workers), 1)
        out["hazard_3"][bound]["exhaustive"] = {"runs": e.runs, "outcomes": len(e.outcomes), "s": t["median"]}
    r, t = _timed(lambda: reduce(FREE_RACE, 2), repeat)
    lost = next(o for o in r.outcomes if o.cpus == LOST_WRITE_CPUS and o.probe != 7)
    out["free_race"] = {"runs": r.runs, "space": r.space, "outcomes": len(r.outcomes), "lost_write_at": r.first[lost],
                        "s": t}
    e, t = _timed(lambda: explore(FREE_RACE, schedules(FREE_RACE, 2), workers=workers), 1)
    out["free_race"]["exhaustive"] = {"runs": e.runs, "outcomes": len(e.outcomes), "s": t["median"]}
    return out


def rows(r: dict) -> list[tuple[str, str, str, str, str]]:
    """Table rows: figure, emulator, baseline, ratio, target."""
    out = []
    for bound, h in r["hazard_3"].items():
        t = h["s"]
        figure = f"{h['runs']:,} of {h['space']:,} schedules, {h['outcomes']} outcomes, {t['median']:.2f} s " \
                 f"[{t['min']:.2f}..{t['max']:.2f}]"
        ex = h.get("exhaustive") or ISSUE.get(int(bound))
        base = f"{ex['runs']:,} in {ex['s']:.2f} s" + (" (issue)" if ex is ISSUE.get(int(bound)) else "") if ex else ""
        ratio = f"{ex['s'] / t['median']:.1f}x" if ex else ""
        target = {3: "<= 840 schedules", 4: "<= 5 s, 5 outcomes"}.get(int(bound), "")
        out.append((f"explore hazard 3, bound {bound}", figure, base, ratio, target))
    f = r["free_race"]
    ex = f["exhaustive"]
    t = f["s"]["median"]
    out.append(("explore free race, bound 2",
                f"lost write at schedule {f['lost_write_at']}, {f['runs']:,} of {f['space']:,}, {t:.2f} s",
                f"{ex['runs']:,} in {ex['s']:.2f} s", f"{ex['s'] / f['s']['median']:.1f}x", "<= 142 schedules"))
    return out
