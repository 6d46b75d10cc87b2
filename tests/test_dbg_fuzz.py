"""Random command lines never end a session: every answer is text, an error is one message,
and the session still answers `info registers` afterwards."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.corpus import bpf_prog
from emu.tools.debugger import ALIASES_CMD, COMMANDS, Debugger

NAMES = sorted(set(COMMANDS) | set(ALIASES_CMD))
WORDS = ["breakpoints", "registers", "threads", "fault", "oops", "scratch", "stdout", "stderr", "context", "on",
         "off", "rip", "$pc", "$rsp", "$rsp+8", "$rdi", "$1", "$", "$foo", "abc", "1.5", "0x1", "1-3", "3-1", "-1",
         "1-", "bpf_kfunc_arena_read_u64", "bpf_kfunc_arena_read_u64+4", "*0xffffffff810000a4",
         "arena_kfuncs.S:15", "scratch.S:9999", "arena", "(", ")", "1 +", "1/0", "~0", "'A'", "\\", "\"", "#"]
NUMBER = st.integers(min_value=-(1 << 64), max_value=1 << 64).map(lambda n: st.sampled_from([str(n), hex(n)]))
FORMAT = st.text("0123456789-xduotacfszibhwgq", max_size=4).map(lambda f: f"/{f}")
EXPR = st.builds(lambda a, op, b: f"{a}{op}{b}", st.sampled_from(["$rsp", "$rip", "4096", "0", "-3", "$1"]),
                 st.sampled_from(["+", "-", "*", "/", "%", "<<", ">>", "&", "|"]),
                 st.sampled_from(["8", "0", "$rax", "64", "-1"]))
ARG = st.one_of(st.sampled_from(WORDS), NUMBER.flatmap(lambda s: s), EXPR,
                st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8))  # a line: no breaks
LINE = st.builds(lambda name, fmt, args: name + fmt + "".join(" " + a for a in args),
                 st.sampled_from(NAMES), st.one_of(st.just(""), FORMAT), st.lists(ARG, max_size=3))


def _small_counts(line: str) -> bool:
    """x with a count of millions over readable RAM prints millions of lines, as gdb's would."""
    head = line.split(" ", 1)[0]
    digits = "".join(c for c in head.partition("/")[2] if c.isdigit())
    return not head.startswith("x/") or not digits or int(digits) <= 4096


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINE.filter(_small_counts), min_size=1, max_size=4), st.booleans())
def test_random_commands_get_an_answer_and_the_session_goes_on(lines, at_the_fault):
    d = Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated")
    d.execute("set context off")
    if at_the_fault:
        d.execute("catch fault")
        d.execute("c")
    for line in lines:
        for from_tty in (False, True):
            out = d.execute(line, from_tty)
            assert isinstance(out, str)
            assert "Traceback" not in out and "\r" not in out
        if d.failed:
            assert out and all(part.strip() for part in out.split("\n")), (line, out)
    regs = d.execute("info registers")
    assert regs == "The program has no registers now." or len(regs.splitlines()) == 18
