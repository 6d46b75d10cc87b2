"""What the decoder and the JIT refuse: each an EmuError of one line that names the instruction.

(The refusals a program text can show are also cases in tests/jit_cases/, err-*.data.)
"""

import re
import struct

import pytest
from bpf_asm import assemble
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.bpf.insn import VALID_OPCODES, BpfInsnError, Insn, decode
from emu.bpf.jit import JitError, do_jit
from emu.errors import EmuError

BASE = 0xFFFF_FFFF_A000_0000


def slots(*words: tuple[int, int, int, int, int]) -> bytes:
    return b"".join(struct.pack("<BBhi", code, src << 4 | dst, off, imm) for code, dst, src, off, imm in words)


EXIT = (0x95, 0, 0, 0, 0)


MALFORMED = [
    (slots((0x18, 0, 0, 0, 1)), 0, "ld_imm64 is truncated"),
    (slots((0xB7, 0, 0, 0, 0)) + b"\x95\x00", 1, "not a whole number of 8-byte slots"),
    (slots((0x18, 1, 0, 0, 1), (0x18, 0, 0, 0, 0), EXIT), 1, "second slot of ld_imm64"),
    (slots((0x07, 0, 0, 0, 1), (0xFF, 0, 0, 0, 0), EXIT), 1, "unknown opcode 0xff"),
    (slots((0xBF, 11, 0, 0, 0), EXIT), 0, "invalid register r11"),
    (slots((0xBF, 0, 12, 0, 0), EXIT), 0, "invalid source field 12"),
    (slots((0xDC, 0, 0, 0, 8), EXIT), 0, "byte swap width must be 16, 32 or 64"),
    (slots((0xBC, 0, 1, 32, 0), EXIT), 0, "movsx off must be one of (8, 16)"),
    (slots((0x3F, 0, 1, 2, 0), EXIT), 0, "div/mod off must be 0 (unsigned) or 1 (signed)"),
    (slots((0xBF, 0, 1, 1, 7), EXIT), 0, "addr_space_cast insn can only convert between address space 1 and 0"),
    (slots((0xDB, 1, 2, 0, 0x120), EXIT), 0, "unknown atomic operation 0x120"),
    (slots((0xD3, 1, 2, 0, 0x01), EXIT), 0, "1- and 2-byte RMW atomics are not supported"),
]


@pytest.mark.parametrize(("data", "index", "message"), MALFORMED, ids=[m for _, _, m in MALFORMED])
def test_malformed_programs(data, index, message):
    with pytest.raises(BpfInsnError, match=re.escape(message)) as info:
        decode(data)
    assert info.value.index == index
    assert str(info.value).startswith(f"insn {index}: ")


def jit(source: str, **kw):
    return do_jit(decode(assemble(source)), BASE, **kw)


@pytest.mark.parametrize(("source", "kw", "index", "message"), [
    ("call 999\nexit", {"resolve": lambda src, imm: None}, 0, "unknown helper 999"),
    ("mov %r0, 0\ncall kfunc 77\nexit", {}, 1, "unknown kfunc with BTF id 77"),
    ("tail_call\nexit", {}, 0, "bpf_tail_call: tail calls are not supported by this JIT"),
    ("call 12\nexit", {"resolve": lambda src, imm: BASE}, 0, "tail calls are not supported"),
    ("callx %r1\nexit", {}, 0, "callx: Linux does not implement indirect calls"),
    ("ldxw.a %r0, [%r1+0]\nexit", {}, 0, r"LDX\|PROBE_MEM32\|W needs the program's arena"),
    ("cast_user %r0, %r1\nexit", {"kern_vm_start": 1 << 63}, 0, "can only be used in a program that has an arena"),
    ("jeq %r1, 0, +3\nexit\nexit", {}, 0, "jump out of range from insn 0 to 4"),
    ("call local f\nexit\nf:\nja +1\nexit", {}, 2, "jump out of range from insn 2 to 4"),
    ("call 1\nexit", {"resolve": lambda src, imm: BASE + (1 << 40)}, 0, "out of range"),
    ("call local f\nexit\nf:\nexit", {"stack_depth": [8, 1024]}, 2, "stack depth 1024 is not within 0..512"),
])
def test_refused_programs(source, kw, index, message):
    with pytest.raises(JitError, match=message) as info:
        jit(source, **kw)
    assert info.value.index == index
    assert "\n" not in str(info.value)


def test_cast_kern_must_arrive_lowered():
    insns = [Insn(0xBF, 0, 1, 1, 1), Insn(0x95)]
    with pytest.raises(JitError, match="only after the verifier lowers it to a 32-bit mov"):
        do_jit(insns, BASE, kern_vm_start=1 << 63, user_vm_start=1 << 40)


def test_one_stack_depth_per_subprogram():
    with pytest.raises(JitError, match="3 stack depths given for 1 subprograms"):
        jit("exit", stack_depth=[0, 0, 0])


def test_an_empty_program():
    with pytest.raises(JitError, match="no instructions"):
        do_jit(decode(b""), BASE)


def test_hand_built_programs_are_checked_like_decoded_ones():
    with pytest.raises(BpfInsnError, match="does not fit its s16/s32 field"):
        do_jit([Insn(0xB7, 0, 0, 0, 1 << 31), Insn(0x95)], BASE)


def test_every_refusal_is_an_emu_error():
    assert issubclass(JitError, EmuError) and issubclass(BpfInsnError, EmuError)


regs = st.one_of(st.integers(0, 10), st.integers(0, 15))
slot = st.tuples(st.one_of(st.sampled_from(sorted(VALID_OPCODES)), st.integers(0, 255)), regs, regs,
                 st.one_of(st.integers(-3, 3), st.integers(-0x8000, 0x7FFF)),
                 st.one_of(st.sampled_from([0, 1, -1, 16, 32, 64, 0xE1, 0xF1, 0x51, 1 << 16]),
                           st.integers(-(1 << 31), (1 << 31) - 1)))


@settings(max_examples=500, deadline=None)
@given(st.lists(slot, max_size=12))
def test_any_slots_either_jit_or_are_refused_in_one_line(words):
    try:
        do_jit(decode(slots(*words, EXIT)), BASE, kern_vm_start=1 << 63, user_vm_start=1 << 40,
               resolve=lambda src, imm: BASE + 0x1000)
    except EmuError as e:
        assert "\n" not in str(e)
