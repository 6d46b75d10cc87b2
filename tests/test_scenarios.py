"""Every scenario in scenarios/ under every policy: the outcome of the kernel version behind it."""

import pytest

from emu.errors import EmuError
from emu.tools.scenario import load_scenario, load_scenarios

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
