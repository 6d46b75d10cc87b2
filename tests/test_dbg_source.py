"""Source-level debugging: list, break FILE:LINE, step, next and info line, on kernel C and on assembly."""

from pathlib import Path

import pytest

from emu.corpus import bpf_prog, stub
from emu.tools.build import build_kernel, kernel_compilers
from emu.tools.debugger import Debugger

SRC = Path(stub("arena_kfuncs_c.c")).read_text().splitlines()


def _line(text: str) -> int:
    return 1 + next(i for i, line in enumerate(SRC) if text in line)


@pytest.fixture
def d():
    if not kernel_compilers():
        pytest.skip("no C compiler")
    dbg = Debugger([str(build_kernel(stub("arena_kfuncs_c.c"))), stub("string.S"), bpf_prog("arena_kfunc_c.S")],
                   "c_kfunc_list_sum", [])
    dbg.execute("set context off")
    return dbg


def test_break_on_a_c_line_stops_there_and_list_shows_it(d):
    line = _line("while (n) {")
    assert d.execute(f"break arena_kfuncs_c.c:{line}").startswith("Breakpoint 1 at 0x")
    assert d.execute("c").splitlines()[0].startswith("Breakpoint 1, 0x")
    assert d.m.line_table.get(d.cpu.reg("rip")) == ("arena_kfuncs_c.c", line)
    listed = d.execute("list").splitlines()
    assert listed[0] == f"{line - 5}\t{SRC[line - 6]}" and len(listed) == 10
    assert f"{line}\t{SRC[line - 1]}" in listed
    assert d.execute("list").splitlines()[0] == f"{line + 5}\t{SRC[line + 4]}"  # the ten after


def test_a_line_with_no_code_moves_the_breakpoint_to_the_next_one(d):
    blank = _line("struct node *n = head__arena;") + 1
    assert SRC[blank - 1] == ""
    out = d.execute(f"break arena_kfuncs_c.c:{blank}")
    assert out.endswith(f": file arena_kfuncs_c.c, line {blank + 1}.")


def test_next_runs_line_by_line_and_step_reaches_the_loop_body(d):
    d.execute(f"break arena_kfuncs_c.c:{_line('while (n) {')}")
    d.execute("c")
    seen = set()
    for _ in range(8):
        out = d.execute("next").splitlines()[-1]
        number, _, text = out.partition("\t")
        assert text == SRC[int(number) - 1]
        seen.add(int(number))
    assert {_line("sum += n->value;"), _line("n = n->next ?")} <= seen


def test_info_line_says_where_a_lines_code_starts_and_ends(d):
    line = _line("return *p__arena;")
    out = d.execute(f"info line arena_kfuncs_c.c:{line}")
    start = d.m.line_addresses("arena_kfuncs_c.c", line)[0]
    assert out.startswith(f'Line {line} of "arena_kfuncs_c.c" starts at address {start:#x} '
                          f"<bpf_kfunc_c_arena_read_u64+")


def test_next_over_a_call_in_assembly_steps_by_the_files_lines():
    dbg = Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated", [])
    dbg.execute("set context off")
    out = dbg.execute("next 3").splitlines()
    number, _, text = out[-1].partition("\t")
    src = Path(bpf_prog("scratch.S")).read_text().splitlines()
    assert text == src[int(number) - 1] and dbg.running
    assert dbg.execute("info line").startswith(f'Line {number} of "')
