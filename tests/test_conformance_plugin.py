"""The conformance-suite plugin, and JIT output on the machine: the opcode cases of tests/jit_cases/ through
the plugin's protocol, and probe accesses on unallocated arena pages under every policy."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from bpf_asm import assemble, parse_data

from emu import Machine
from emu.errors import EmuError
from emu.policy import POLICIES
from emu.tools.conformance import run_plugin

CASES = sorted((Path(__file__).parent / "jit_cases").glob("*.data"))
# What only the bare-Unicorn runner gives: its test helpers 1-3, kfuncs by id, the arena's probe forms
_RUNNER_ONLY = re.compile(r"^\s*(call\s+[0-46-9]|call kfunc|\w+\.a\b|cast_user|lock\S*\.a)", re.M)


def _protocol(data: bytes) -> str:
    """The bytes as the suite's runner writes them: two hex digits and a space each."""
    return " ".join(f"{b:02x}" for b in data)


def _plugin_cases():
    for path in CASES:
        text = path.read_text()
        if not _RUNNER_ONLY.search(text):
            yield pytest.param(path, id=path.stem)


@pytest.mark.parametrize("path", list(_plugin_cases()))
def test_opcode_cases_through_the_plugin(path):
    case = parse_data(path)
    if case.error is not None:
        with pytest.raises(EmuError) as info:
            run_plugin(_protocol(case.program), _protocol(case.mem) if case.mem else None)
        assert case.error in str(info.value) and "\n" not in str(info.value)
        return
    assert run_plugin(_protocol(case.program), _protocol(case.mem) if case.mem else None) == case.result


def test_most_cases_run_through_the_plugin():
    assert len(list(_plugin_cases())) >= len(CASES) - 40


def _plugin(program: bytes, *mem: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emu", "conformance-plugin", *mem], input=_protocol(program),
                          capture_output=True, text=True, timeout=60)


def test_the_plugin_speaks_the_runners_protocol():
    sum_mem = assemble("ldxb %r0, [%r1+0]\nldxb %r2, [%r1+1]\nadd %r0, %r2\nadd %r0, %r2\nexit\n")
    p = _plugin(sum_mem, "02 05")
    assert (p.returncode, p.stdout, p.stderr) == (0, "c\n", "")
    unwind = assemble("mov %r1, 0\ncall 5\nmov %r0, 7\nexit\n")  # helper 5 with r1 = 0 ends the program with 0
    assert _plugin(unwind).stdout == "0\n"
    p = _plugin(assemble("callx %r1\nexit\n"))
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == "arena-emu: insn 0: callx: Linux does not implement indirect calls\n"


PROBES = """mov %r1, 0x3000
ldxdw.a %r0, [%r1+8]
stdw.a [%r1+0], 7
ldxdw.a %r2, [%r1+0]
add %r0, %r2
exit
"""


@pytest.mark.parametrize("policy", POLICIES)
def test_a_jited_probe_load_reads_0_and_a_store_is_skipped_under_every_policy(policy):
    m = Machine(policy=policy)
    arena = m.create_arena(16)
    prog = m.load_bpf_insns(assemble(PROBES), "probes")
    r = m.call("probes")
    if policy == "map-always":  # every kernel PTE maps the garbage page: nothing faults, the store lands there
        assert (r.status, r.ret, r.faults, m.stream_text()) == ("returned", 7, [], "")
        return
    assert (r.status, r.ret) == ("returned", 0)
    load, store, load2 = r.faults
    ranges = prog.jited.insn_ranges
    assert [f.rip for f in r.faults] == [ranges[1][0], ranges[2][0], ranges[3][0]]
    assert [(f.resolution, f.action, f.cleared) for f in r.faults] == [
        ("extable", "skip", "rax"), ("extable", "skip", None), ("extable", "skip", "rsi")]
    entries = {e.insn: e for e in prog.jited.extable}
    assert [hex(entries[f.rip].fixup) for f in r.faults] == [hex(0x8070_5000 | ranges[1][1] - ranges[1][0]),
                                                           hex(0x8070_0100 | ranges[2][1] - ranges[2][0]),
                                                           hex(0x8070_6800 | ranges[3][1] - ranges[3][0])]
    base = arena.user_vm_start & ~0xFFFF_FFFF
    assert re.findall(r"ERROR: Arena (\w+) access at unmapped address (0x\w+)", m.stream_text()) == [
        ("READ", hex(base + 0x3008)), ("WRITE", hex(base + 0x3000)), ("READ", hex(base + 0x3000))]
    assert m.stream_text().count(f"{prog.ksym}+0x") == 3


def test_a_jited_program_calls_the_kernels_helpers():
    m = Machine(cpus=2)
    m.load_bpf_insns(assemble("call 8\nmov %r6, %r0\ncall 5\ncall 5\nmov %r0, %r6\nexit\n"), "helpers")
    assert m.call("helpers", cpu=1).ret == 1  # bpf_get_smp_processor_id()
    assert m.bpf.ktime_ns == 1_000_002_000  # bpf_ktime_get_ns(): 1 us a call
