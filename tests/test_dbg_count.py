"""A stop at a breakpoint or a watchpoint does not count the instruction it stops before."""

import pytest

from emu.corpus import bpf_prog
from emu.tools.debugger import Debugger

WHOLE = "[Inferior 1 returned 0x0 (0) after 27 instructions]"  # `c` with nothing set


@pytest.mark.parametrize("script", [
    ["break bpf_kfunc_arena_read_u64", "c", "c"],
    ["break bpf_kfunc_arena_read_u64", "break bpf_arena_alloc_pages", "c", "c", "c"],
    ["break *0xffffffff810000a4", "si 10", "c"],  # a stepping run stopped by a breakpoint
    ["break *0xffffffff810000a1", "si", "si", "c"],  # a step that lands on one
    ["watch $rsp-8", "c", "c"],
    ["catch fault", "c", "si", "c"],
])
def test_the_count_at_the_end_is_the_count_without_stops(script):
    d = Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated")
    d.execute("set context off")
    assert d.execute("c").endswith(WHOLE)
    d.execute("run")
    outs = [d.execute(c) for c in script]
    assert outs[-1].endswith(WHOLE)
