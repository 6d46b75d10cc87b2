"""The pytest plugin, as another project sees it: found through its entry point, run in a fresh pytest."""

import re
from pathlib import Path

import pytest

DOCS = (Path(__file__).resolve().parent.parent / "docs" / "pytest-plugin.md").read_text()
EXAMPLES = re.findall(r"```python\n(.*?)```", DOCS, re.S)

RETRY_TESTS = '''
import pytest
from emu.testing import assert_restarted


def test_recovered(machine, load):
    load("bpf_progs/scratch.S")
    result = machine.call("arena_arg_unpopulated")
    assert_restarted(result, at="bpf_kfunc_arena_read_u64+4", machine=machine)


@pytest.mark.policies("oops")
def test_expected_a_restart(machine, load):
    load("bpf_progs/scratch.S")
    result = machine.call("arena_arg_unpopulated")
    assert_restarted(result, at="bpf_kfunc_arena_read_u64+4", machine=machine)
'''


def test_the_fixtures_come_from_the_entry_point_and_a_failure_tells_the_story(pytester):
    pytester.makepyfile(test_retry=RETRY_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*test_retry.py::test_recovered PASSED*",
        "*test_retry.py::test_expected_a_restart[[]oops[]] FAILED*",
        "E*AssertionError: fault #1 at 0xffffffff81000004 <bpf_kfunc_arena_read_u64+0x4/0x10>: it was "
        "resolved by oops, not scratch; the instruction was not restarted (stop); the PTE is still none "
        "after the handler; the restarted instruction did not complete (not seen again)",
        "E*fault #1 on CPU 0: #PF read at 0xffffffff81000004 <bpf_kfunc_arena_read_u64+0x4/0x10>",
        "E*  page_fault_oops: kfence_handle_page_fault() declined: not a KFENCE address",
        "E*  page_fault_oops: oops",
        "E*  the call stops here (oops)",
    ])
    assert "arena_emu" in pytester.runpytest_subprocess("--trace-config").stdout.str()


def test_the_policy_comes_from_the_command_line_or_the_ini_file(pytester):
    pytester.makepyfile(test_policy='''
def test_policy(machine):
    print("POLICY", machine.policy, "CPUS", len(machine.cpus), "BUDGET", machine.budget)
''')
    out = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider").stdout.str()
    assert "POLICY scratch CPUS 1 BUDGET 10000000" in out
    pytester.makeini("[pytest]\narena_policy = scratch-v1+flush-on-replace\narena_cpus = 2\narena_budget = 5000\n")
    out = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider").stdout.str()
    assert "POLICY scratch-v1+flush-on-replace CPUS 2 BUDGET 5000" in out
    out = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "--arena-policy", "oops").stdout.str()
    assert "POLICY oops CPUS 2 BUDGET 5000" in out


def test_an_unknown_policy_in_the_marker_fails_at_collection(pytester):
    pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.policies("lazy")
def test_x(machine):
    pass
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*unknown policy 'lazy': the policies are oops, map-always, scratch-v1, scratch*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


@pytest.mark.parametrize("n", range(len(EXAMPLES)), ids=[
    re.search(r"def (test_\w+)", e).group(1) for e in EXAMPLES])
def test_every_example_in_the_plugin_docs_passes(pytester, n):
    pytester.makepyfile(test_example=EXAMPLES[n])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    assert re.search(r"\d+ passed", result.stdout.str())


def test_the_docs_cover_every_fixture_option_and_helper():
    import emu.testing

    for name in ("`machine`", "`policy`", "`arena`", "`load`", "--arena-policy", "--arena-cpus", "--arena-budget",
                 "arena_policy", "arena_cpus", "arena_budget", "@pytest.mark.policies", "@pytest.mark.arena"):
        assert name in DOCS, name
    for helper in emu.testing.__all__:
        assert f"### `{helper}(" in DOCS or f"`{helper}(actual, expected)`" in DOCS, helper


def test_a_plain_assert_on_an_event_shows_the_event(pytester):
    pytester.makepyfile(test_plain='''
def test_plain(machine, load):
    load("bpf_progs/stream.S")
    fault = machine.call("stream_arena_read_fault").faults[0]
    assert fault.resolution == "scratch"
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines([
        "E*AssertionError: assert 'extable' == 'scratch'",
        "E*<FaultEvent #1 cpu0 #PF read 0xffffc9003620ffff at bpf_prog_*_stream_arena_read_fault+0x1c/0x30: "
        "extable (skip, rax = 0)>:",
        "E*  #PF read at 0xffffffff8100001c <bpf_prog_*_stream_arena_read_fault+0x1c/0x30>: movl (%rdi, %r12), "
        "%eax, address 0xffffc9003620ffff",
        "E*  PTE before 0x0, after 0x0; extable by ex_handler_bpf: skip to 0xffffffff81000020, rax = 0",
        "E*  stderr: ERROR: Arena READ access at unmapped address 0x7f7d26207fff",
    ])


def test_a_bad_arena_option_is_a_usage_error(pytester):
    pytester.makepyfile(test_x="def test_x(machine):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--arena-policy", "bogus")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: arena-emu: unknown policy 'bogus': the policies are oops, map-always, "
                                 "scratch-v1, scratch"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_loading_a_missing_file_names_every_place_looked(pytester):
    pytester.makepyfile(test_x='''
import pytest
from emu.errors import EmuError

def test_x(load, request):
    with pytest.raises(EmuError) as e:
        load("bpf_progs/nope.S")
    print("MESSAGE", e.value)
''')
    out = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider").stdout.str()
    line = out[out.index("MESSAGE"):].splitlines()[0]
    assert line.startswith("MESSAGE cannot read bpf_progs/nope.S: no such file (looked at bpf_progs/nope.S, ")
    assert line.count(", ") == 2 and line.endswith("/bpf_progs/nope.S)")


def test_load_builds_c_and_gives_back_the_bpf_object(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))  # this tree's plugin
    pytester.makepyfile(test_x='''
from emu.testing import assert_fault_at

def test_x(load):
    obj = load("kernel_stubs/arena_kfuncs.S", "bpf_progs/scratch.bpf.c")
    result = obj.run("arena_arg_unpopulated")
    assert (result.ret, [f.resolution for f in result.faults]) == (0, ["scratch"])
    obj = load("bpf_progs/stream.bpf.c")
    assert_fault_at(obj.run("stream_arena_read_fault"), "stream.bpf.c:21", resolution="extable", action="skip")
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
