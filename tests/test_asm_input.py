"""Hostile assembly input (issue 22): a `file:line: error:` for each bad line, never a hang, a
traceback or a number silently changed. Each expectation is GNU as 2.40's (`as --64`)."""

import pytest

from emu.asm.assembler import Assembler, Source
from emu.asm.exprs import MASK64
from emu.errors import AsmError
from emu.machine import Machine

BASES = {"text": 0xFFFF_FFFF_8100_0000, "rodata": 0xFFFF_FFFF_8200_0000,
         "data": 0xFFFF_FFFF_8280_0000, "bss": 0xFFFF_FFFF_8300_0000}


def assemble(text):
    return Assembler().assemble([Source("f.S", text)], BASES, {})


def errors(text):
    with pytest.raises(AsmError) as e:
        assemble(text)
    return [str(d) for d in e.value.diagnostics]


def test_a_carriage_return_is_whitespace_as_in_gas():
    """keystone hangs on `xor %r8d,\\r%r8d`; gas reads the \\r as a space."""
    assert bytes(assemble("xor %r8d,\r%r8d\r\nret\r\n").sections["text"].data).hex() == "4531c0" "c3"


def test_the_reported_machine_case_loads():
    Machine().load_source("xor %r8d,\r%r8d")


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85", "\u2028"])
def test_control_characters_are_refused_before_keystone(char):
    assert errors(f"nop\nxor %r8d,{char}%r8d\nmov{char} %rax, %rbx\n") == [
        f"f.S:2: error: invalid character ({ord(char):#x}) in 'xor %r8d,{repr(char)[1:-1]}%r8d'",
        f"f.S:3: error: invalid character ({ord(char):#x}) in 'mov{repr(char)[1:-1]} %rax, %rbx'"]


def test_non_ascii_is_refused_outside_strings_and_kept_inside():
    assert errors("add $8%ré, %rax\n") == ["f.S:1: error: invalid character (0xe9) in 'add $8%ré, %rax'"]
    assert errors("é: nop\n") == ["f.S:1: error: invalid character (0xe9) in 'é: nop'"]
    image = assemble(".data\n.ascii \"é\\r\"  # é in a comment\n")
    assert bytes(image.sections["data"].data) == "é\r".encode()


@pytest.mark.parametrize(("source", "message"), [
    (".data\n.quad " + "9" * 5000, "f.S:2: error: number '99999999999999999...' is too long (5000 digits)"),
    (".data\n.long 1 + " + "9" * 4400, "f.S:2: error: number '99999999999999999...' is too long (4400 digits)"),
    ("mov $" + "9" * 5000 + ", %rax", "f.S:1: error: number '99999999999999999...' is too long (5000 digits)"),
    ("mov " + "9" * 5000 + "(%rdi), %rax", "f.S:1: error: number '99999999999999999...' is too long (5000 digits)"),
    (".data\n.quad 99999999999999999999999 * 2",
     "f.S:2: error: number 0x152d02c7e14af67fffff does not fit in 64 bits, in '99999999999999999999999 * 2'"),
])
def test_huge_literals_are_diagnostics(source, message):
    assert errors(source) == [message]


@pytest.mark.parametrize("expr", ["(" * 2000 + "1" + ")" * 2000, "-" * 3000 + "1"])
def test_deep_nesting_assembles_in_data_and_in_operands(expr):
    image = assemble(f".data\n.quad {expr}\n.text\nmov ${expr}, %rax\nmov {expr}(%rdi), %rax\n")
    assert bytes(image.sections["data"].data) in (bytes(8), (1).to_bytes(8, "little"), (MASK64).to_bytes(8, "little"))


def test_an_overflowing_product_wraps_as_in_gas():
    """gas computes in 64 bits and says nothing; the old evaluator went through a float and raised."""
    image = assemble(".data\n.quad 0xffffffffffffffff * 0xffffffffffffffff * 0xffffffffffffffff / 3\n"
                     ".quad 0x7fffffffffffffff * 0x7fffffffffffffff * 3 / 2\n")
    assert bytes(image.sections["data"].data) == bytes(8) + (1).to_bytes(8, "little")
