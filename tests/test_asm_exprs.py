"""Expressions evaluate as GNU as evaluates them (gas/expr.c): 64-bit offsetT, gas's precedence.

Each expected value is what GNU as 2.40 (`as --64`) puts in a `.quad` for the expression.
"""

import shutil
import subprocess

import pytest

from emu.asm.assembler import Assembler, Source
from emu.asm.exprs import MASK64, ExprError, evaluate
from emu.errors import AsmError

GAS_QUAD = [
    ("-7 % 2", -1),  # C's remainder: the dividend's sign
    ("7 % -2", 1),
    ("-7 / 2", -3),  # truncating division
    ("0x1234567890abcdef / 1", 0x1234567890abcdef),  # integer division, no float on the way
    ("0x7fffffffffffffff / 3", 0x2aaaaaaaaaaaaaaa),
    ("1 << 64", 0),  # a shift by 64 or more gives 0 (gas warns)
    ("1 << 63 >> 63", 1),
    ("-1 >> 60", 0xF),  # unsigned shift
    ("-1 >> 64", 0),
    ("1 << -1", 0),  # the count is unsigned too
    ("0x7fffffffffffffff * 0x7fffffffffffffff", 1),  # wraps to 64 bits
    ("0xffffffffffffffff + 2", 1),
    ("1 + 2 << 3", 17),  # << binds tighter than +
    ("3 + 4 & 1", 3),  # & binds tighter than +
    ("1 + 2 ^ 3", 2),
    ("2 * 3 % 4", 2),
    ("3 - 2 - 1", 0),
    ("~0 + 1", 0),
    ("!0", 1),
    ("!5", 0),
    ("- -1", 1),
    ("-0xffffffff81000000", 0x7F000000),
]


@pytest.mark.parametrize(("expr", "value"), GAS_QUAD)
def test_operators_match_gas(expr, value):
    assert evaluate(expr, {}) & MASK64 == value & MASK64


def test_results_keep_their_sign_and_addresses_stay_positive():
    assert evaluate("-1", {}) == -1
    assert evaluate("sym + 8", {"sym": 0xFFFF_FFFF_8100_0000}) == 0xFFFF_FFFF_8100_0008


@pytest.mark.skipif(shutil.which("as") is None or shutil.which("objcopy") is None, reason="needs GNU binutils")
def test_the_table_still_matches_the_systems_gnu_as(tmp_path):
    (tmp_path / "e.s").write_text("".join(f".quad {e}\n" for e, _ in GAS_QUAD))
    subprocess.run(["as", "--64", "-o", str(tmp_path / "e.o"), str(tmp_path / "e.s")], check=True,
                   capture_output=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(tmp_path / "e.o"), str(tmp_path / "e.bin")],
                   check=True)
    assert (tmp_path / "e.bin").read_bytes() == b"".join((v & MASK64).to_bytes(8, "little") for _, v in GAS_QUAD)


@pytest.mark.parametrize("expr", ["(" * 2000 + "1" + ")" * 2000, "-" * 3000 + "1", "~" * 3000 + "0"])
def test_deep_nesting_is_evaluated_without_recursion(expr):
    assert evaluate(expr, {}) in (0, 1, -1)


@pytest.mark.parametrize(("expr", "message"), [
    ("9" * 5000, "number '99999999999999999...' is too long (5000 digits)"),
    ("99999999999999999999999 + 1",
     "number 0x152d02c7e14af67fffff does not fit in 64 bits, in '99999999999999999999999 + 1'"),
    ("1 / 0", "division by zero in '1 / 0'"),
    ("(" * 100 + "1", "missing ')' in '" + "(" * 57 + "...'"),
    ("1 +", "expression '1 +' ends early"),
    ("1 )", "unexpected ')' in '1 )'"),
])
def test_bad_expressions_say_why(expr, message):
    with pytest.raises(ExprError) as e:
        evaluate(expr, {})
    assert str(e.value) == message


def test_a_data_value_gets_gas_range_and_the_error_one_line():
    """gas's rule: a field takes a value whose magnitude fits it, of either sign (.byte -255 is 0x01)."""
    image = Assembler().assemble([Source("d.S", ".data\n.byte -255, 255, -128\n.long -0xffffffff\n")],
                                 {"text": 0x1000, "rodata": 0x2000, "data": 0x3000, "bss": 0x4000}, {})
    assert bytes(image.sections["data"].data).hex() == "01ff80" "01000000"
    with pytest.raises(AsmError) as e:
        Assembler().assemble([Source("d.S", ".data\n.byte -256\n.quad 99999999999999999999999\n")],
                             {"text": 0x1000, "rodata": 0x2000, "data": 0x3000, "bss": 0x4000}, {})
    assert [str(d) for d in e.value.diagnostics] == [
        "d.S:2: error: value 0xffffffffffffff00 does not fit in 1 byte(s)",
        "d.S:3: error: value 0x152d02c7e14af67fffff does not fit in 8 byte(s)"]
