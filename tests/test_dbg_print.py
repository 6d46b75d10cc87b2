"""print/F in gdb's formats, and x printing what it can read before the first unreadable value."""

import pytest


@pytest.mark.parametrize(("line", "printed"), [
    ("p/t 5", "101"), ("p/t 0", "0"), ("p/c 65", "65 'A'"), ("p/c 300", "44 ','"), ("p/c -1", "-1 '\\377'"),
    ("p/c 39", "39 '\\''"), ("p/c 92", "92 '\\\\'"), ("p/c 10", "10 '\\n'"), ("p/c 0", "0 '\\000'"),
    ("p/x 255", "0xff"), ("p/x -1", "0xffffffffffffffff"), ("p/z 5", "0x0000000000000005"),
    ("p/d -1", "-1"), ("p/d 0xffffffffffffffff", "-1"), ("p/u -1", "18446744073709551615"),
    ("p/o 8", "010"), ("p/o 0", "0"), ("p/s 5", "5"), ("p 5", "5"), ("p/xd 5", "5"),
    ("p/f 3", "1.4821969375237396e-323"), ("p/f 0x4000000000000000", "2"), ("p/f 0x3fb999999999999a",
                                                                            "0.10000000000000001"),
    ("p/f 0xfff0000000000000", "-inf"), ("p/f 0x7ff8000000000000", "nan(0x8000000000000)"),
    ("p/a 0", "0x0"), ("p/a bpf_kfunc_arena_read_u64", "0xffffffff81000000 <bpf_kfunc_arena_read_u64>"),
    ("p/a bpf_kfunc_arena_read_u64+4", "0xffffffff81000004 <bpf_kfunc_arena_read_u64+4>"),
])
def test_print_formats_as_gdb_prints_a_long(d, line, printed):
    assert d.execute(line) == f"$1 = {printed}"


@pytest.mark.parametrize(("line", "error"), [
    ("p/q 5", 'Undefined output format "q".'),
    ("p/2x 5", 'Item count other than 1 is meaningless in "print" command.'),
    ("p/xg 5", 'Size letters are meaningless in "print" command.'),
    ("p/i 5", 'Format letter "i" is meaningless in "print" command.'),
    ("p", "The history is empty."),
])
def test_print_refuses_what_gdb_refuses(d, line, error):
    assert d.execute(line) == error
    assert d.values == []


def test_print_with_no_expression_prints_the_last_value_again(d):
    d.execute("p 65")
    assert d.execute("p/c") == "$2 = 65 'A'"


def test_x_prints_what_is_readable_then_where_it_stops(d):
    rsp = d.cpu.reg("rsp")  # the last word of the stack: the next page is the guard
    top = rsp + 8
    assert d.execute("x/100000gx $rsp") == f"{rsp:#x}:\t0xffffffff80fff100\tCannot access memory at address {top:#x}"
    assert d.execute("x/3gx $rsp-8") == (f"{rsp - 8:#x}:\t0x0000000000000000\t0xffffffff80fff100\n"
                                         f"{top:#x}:\tCannot access memory at address {top:#x}")
    assert d.execute("x/5xb $rsp+5") == f"{rsp + 5:#x}:\t0xff\t0xff\t0xff\tCannot access memory at address {top:#x}"
    assert d.execute("x/4gx 0") == "Cannot access memory at address 0x0"


def test_x_c_prints_chars_as_gdb(d):
    assert d.execute("x/4c $pc").endswith(":\t85 'U'\t72 'H'\t-119 '\\211'\t-27 '\\345'")
