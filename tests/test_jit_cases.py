"""The JIT on bpf_conformance-format cases, one file per case in tests/jit_cases/: r0, or the error it must raise.

Each case also runs on the reference interpreter, so the expected values are checked twice.
"""

import struct
from pathlib import Path

import pytest
from bpf_asm import parse_data
from jit_runner import run_interp, run_jit

from emu.bpf.insn import BPF_LD, BPF_LD_IMM64, VALID_OPCODES, Insn
from emu.errors import EmuError

CASES = sorted((Path(__file__).parent / "jit_cases").glob("*.data"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path):
    case = parse_data(path)
    if case.error is not None:
        with pytest.raises(EmuError, match=case.error.replace("(", r"\(").replace(")", r"\)")) as info:
            run_jit(case.program, case.mem)
        assert "\n" not in str(info.value)
        return
    assert run_jit(case.program, case.mem).r0 == case.result
    assert run_interp(case.program, case.mem).r0 == case.result


def test_every_opcode_has_a_case():
    seen = set()
    for path in CASES:
        insns = [Insn(c, r & 15, r >> 4, o, i) for c, r, o, i in struct.iter_unpack("<BBhi", parse_data(path).program)]
        seen |= {insn.code for i, insn in enumerate(insns) if i == 0 or insns[i - 1].code != BPF_LD_IMM64}
    legacy = {code for code in VALID_OPCODES if code & 7 == BPF_LD and code != BPF_LD_IMM64}  # one refusal is enough
    assert seen & legacy
    assert not {Insn(code).name for code in VALID_OPCODES - legacy - seen}
