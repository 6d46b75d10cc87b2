"""Every scenario in scenarios/ under every policy: the outcome of the kernel version behind it."""

import pytest

from emu.errors import EmuError
from emu.policy import Policy
from emu.tools.scenario import Outcome, load_scenario, load_scenarios

CASES = [(s, key) for s in load_scenarios() for key in s.expect]


@pytest.mark.parametrize(("scenario", "policy"), CASES, ids=[f"{s.name}-{k}" for s, k in CASES], indirect=["policy"])
def test_scenario_outcome_per_policy(scenario, policy, machine):
    outcome = scenario.run_on(machine)
    assert outcome.matches(scenario.expect[str(policy)]), (outcome, [e.summary() for e in machine.events])


def test_a_scenario_must_state_every_policy(tmp_path):
    path = tmp_path / "half.toml"
    path.write_text('title = "t"\nfiles = []\nentry = "e"\n[expect]\noops = { status = "oops" }\n')
    with pytest.raises(EmuError) as e:
        load_scenario(path)
    assert str(e.value) == (f"{path}: no expectation for map-always, scratch-v1, scratch: "
                            "a scenario states every policy's outcome")


def test_a_scenario_with_an_unknown_knob_is_refused(tmp_path):
    path = tmp_path / "knob.toml"
    path.write_text('title = "t"\nfiles = []\nentry = "e"\n[expect]\n"scratch+fast" = {}\n')
    with pytest.raises(EmuError, match="unknown knob 'fast'"):
        load_scenario(path)


def _scenario(tmp_path, files, extra=""):
    path = tmp_path / "mine.toml"
    expect = "".join(f'{p} = {{ ret = 0, reports = 1, faults = 1 }}\n' for p in ("oops", "map-always", "scratch-v1",
                                                                               "scratch"))
    path.write_text(f'title = "t"\nfiles = {files}\nentry = "stream_arena_read_fault"\n{extra}[expect]\n{expect}')
    return load_scenario(path)


def test_a_scenario_runs_a_bpf_program_in_c_built_first(tmp_path, machine):
    from bpf_build import build

    build("use_after_free")  # skips only if no compiler exists at all
    outcome = _scenario(tmp_path, '["bpf_progs/stream.bpf.c"]').run_on(machine)
    assert outcome == Outcome("returned", 0, 1, 1)


def test_a_scenario_with_args_for_a_bpf_program_or_two_objects_is_refused(tmp_path):
    sc = _scenario(tmp_path, '["bpf_progs/stream.bpf.o"]', 'args = ["1"]\n')
    with pytest.raises(EmuError) as e:
        sc.run(Policy.parse("scratch", []))
    assert str(e.value) == (f"{sc.path}: args: stream_arena_read_fault is a BPF program, run as BPF_PROG_TEST_RUN "
                            "runs it")
    sc = _scenario(tmp_path, '["bpf_progs/stream.bpf.o", "bpf_progs/scratch.bpf.o"]')
    with pytest.raises(EmuError) as e:
        sc.run(Policy.parse("scratch", []))
    assert str(e.value) == f"{sc.path}: files: one BPF object per scenario, not 2"
