"""bpf_int_jit_compile()'s passes: shrinking to convergence, nop padding in the late passes, the pass limit."""

from pathlib import Path

import pytest
from bpf_asm import assemble, parse_data
from jit_runner import jit, run_image

from emu.bpf import jit as jit_module
from emu.bpf.jit import JitError

JUMPY = ["jump-rel32", "ja-rel32", "ja-zero", "loop", "exit-twice", "gotol", "may-goto-budget", "jeq-imm", "call-local"]


@pytest.mark.parametrize("name", JUMPY)
def test_padded_passes_keep_the_size_and_the_meaning(monkeypatch, name):
    """From pass 2 on every jump keeps its pass-1 size, shrunk jumps padded with nops in front (jmp_padding)."""
    case = parse_data(Path(__file__).parent / "jit_cases" / f"{name}.data")
    plain = jit(case.program)
    monkeypatch.setattr(jit_module, "PADDING_PASSES", 1)
    padded = jit(case.program)
    assert padded.passes == 2 or len(padded.code) >= len(plain.code)
    assert run_image(padded, case.mem).r0 == case.result


def test_a_padded_short_jump_has_the_nops_before_it(monkeypatch):
    monkeypatch.setattr(jit_module, "PADDING_PASSES", 1)
    image = jit(assemble("jeq %r1, 0, +2\nmov %r0, 1\nmov %r0, 2\nexit"))  # rel32 in pass 1 (64-byte estimates)
    start, end = image.insn_ranges[0]
    assert image.code[start - image.address:end - image.address].hex(" ").endswith("0f 1f 40 00 74 0a")


def test_a_program_that_does_not_converge_is_refused(monkeypatch):
    monkeypatch.setattr(jit_module, "MAX_PASSES", 1)
    with pytest.raises(JitError, match="did not converge in 1 passes"):
        jit(assemble("mov %r0, 0\nexit"))


def test_shrinking_takes_more_passes_when_jumps_chain():
    body = "\n".join(f"jeq %r1, {k}, +{40 - k}" for k in range(40))
    image = jit(assemble(f"{body}\nmov %r0, 0\nexit"))
    assert image.passes >= 3
