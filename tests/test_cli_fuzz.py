"""Random command lines for `arena-emu`: whatever the words, the command ends with one of its
documented exit statuses (or argparse's), and never with an internal error or a traceback.

Kept to what ends quickly and touches nothing outside: `debug` only with --batch (never --gdb,
stdin empty), `explore` with --schedule or one worker and one step, `build` only on files that
do not exist, `compare` one scenario at a time. touch_pages is left out of the entry points:
its argument is how many pages it faults in, as long a run as asked for.
"""

import io
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.corpus import bpf_prog, stub
from emu.policy import KNOBS, POLICIES
from emu.tools.cli import main
from emu.tools.debugger import ALIASES_CMD, COMMANDS

SCRATCH, LIST = bpf_prog("scratch.S"), stub("list.S")
SYMBOLS = ["arena_arg_unpopulated", "alloc_over_scratch", "free_over_scratch", "scratch_aliasing",
           "not_caught_after_recovery", "lost_write", "same_page_twice", "lower_guard", "upper_guard",
           "copy_to_unallocated", "kfunc_list_sum", "list_count", "list_sum", "demo_list", "arena", "nosuch", ""]
SCENARIOS = ["arena-arg-unpopulated", "lower-guard", "no-bpf-program", "lost-write", "nosuch", ""]
KNOB_NAMES = sorted(KNOBS)
WORDS = ["", "abc", "1.5", "0x", "-", "--", "é", "a b", "$rsp", "demo_list+8", "(", "1/0", "~0", "'A'", "\\"]
MISSING = ["/nonexistent/x.S", "missing.c", "nope.bpf.c", "kernel_stubs/nope.S", "bpf_progs/", "x.o", "", "/"]


def _number(n: int) -> st.SearchStrategy[str]:
    return st.sampled_from([str(n), hex(n)])


NUMBER = st.one_of(st.integers(-(1 << 70), 1 << 70).flatmap(_number), st.integers(-3, 4096).map(str))
VALUE = st.one_of(NUMBER, st.sampled_from(WORDS + SYMBOLS))
SMALL = st.one_of(st.integers(-2, 9).map(str), st.sampled_from(["", "x", "99999999999999999999"]))


def _paths(tmp: dict[str, str]) -> st.SearchStrategy[str]:
    """Files that exist (the shipped sources, a directory, an empty file, `tmp`'s) and files that do not."""
    return st.sampled_from([SCRATCH, LIST, "bpf_progs/scratch.S", "kernel_stubs/list.S", "bpf_progs",
                            "/dev/null", tmp["text"], tmp["binary"], *MISSING])


NOTHING: st.SearchStrategy[list[str]] = st.just([])


def _mostly(words: st.SearchStrategy[list[str]], otherwise=NOTHING) -> st.SearchStrategy[list[str]]:
    """`words` three times in four: most command lines should get past argparse."""
    return st.sampled_from([words, words, words, otherwise]).flatmap(lambda s: s)


def _rarely(words: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return _mostly(NOTHING, words)


def _opts(*pairs: tuple[str, st.SearchStrategy[str]]) -> st.SearchStrategy[list[str]]:
    """Some of the options, each maybe twice, in any order."""
    one = st.sampled_from(pairs).flatmap(lambda p: p[1].map(lambda v, name=p[0]: [name, v]))
    return st.lists(one, max_size=5).map(lambda opts: [w for o in opts for w in o])


POLICY = [("--policy", st.sampled_from([*POLICIES, "nosuch", ""])), ("--knob", st.sampled_from([*KNOB_NAMES, "x"]))]
EX = st.builds(lambda name, args: " ".join([name, *args]), st.sampled_from(sorted(set(COMMANDS) | set(ALIASES_CMD))),
               st.lists(st.one_of(VALUE, st.sampled_from(["registers", "fault", "on", "off", "/x"])), max_size=2))


@st.composite
def argv(draw, tmp: dict[str, str]) -> list[str]:
    paths = _paths(tmp)
    files = _mostly(st.just([SCRATCH, LIST]) | st.lists(paths, min_size=1, max_size=2))  # both: every SYMBOL
    entry = st.sampled_from(SYMBOLS)
    required_entry = _mostly(entry.map(lambda e: ["--entry", e]))
    command = draw(st.sampled_from(["run", "debug", "demo", "compare", "explore", "build", "conformance-plugin",
                                    "--version", "-h", "rnu", "", "help"]))
    words: list[str]
    if command == "run":
        words = draw(files) + draw(required_entry) + draw(_opts(
            ("--arg", VALUE), ("--budget", SMALL), ("--budget", NUMBER),
            ("--ram", st.sampled_from(["64M", "4k", "1G", "0", "-4096", "lots"])),
            ("--map", st.builds(lambda a, s: f"{a},{s}", NUMBER, NUMBER)), ("--map", NUMBER),
            ("--syntax", st.sampled_from(["att", "intel", "x"])), *POLICY))
        words = words + draw(st.sampled_from([[], ["--json"]]))
    elif command == "debug":
        words = draw(files) + draw(required_entry) + draw(_opts(
            ("--arg", VALUE), ("--budget", SMALL), ("--syntax", st.sampled_from(["att", "intel"])),
            ("-x", _paths(tmp)), ("-ex", EX), ("-ex", EX), ("--cpus", SMALL), ("--setup", entry),
            ("--entry1", entry), ("--entry3", entry), *POLICY))
        words = words + ["--batch"] + draw(st.sampled_from([[], ["--once"]]))
    elif command == "explore":
        words = draw(files) + draw(_opts(
            ("--entry0", entry), ("--entry1", entry), ("--entry5", entry), ("--cpus", SMALL), ("--setup", entry),
            ("--probe", VALUE), ("--seed", NUMBER), *POLICY))
        step = st.builds(lambda c, n: f"{c}:{n}", SMALL, st.sampled_from(["1", "5", "*", "@fault", "@x", "0", "-1"]))
        schedule = st.lists(step, max_size=3).map(lambda steps: ["--schedule", " ".join(steps)])
        words = words + draw(schedule | st.just(["--workers", "1", "--bound", "1"]))  # no pool of processes
    elif command == "build":
        words = draw(_mostly(st.lists(st.sampled_from(MISSING), min_size=1, max_size=1)))
        words = words + draw(_mostly(st.just(["--kernel"])))
        words = words + draw(_rarely(st.sampled_from(MISSING).map(lambda o: ["-o", o])))
    elif command == "conformance-plugin":
        words = draw(st.lists(st.one_of(st.binary(max_size=16).map(bytes.hex), st.sampled_from(WORDS)), max_size=1))
    elif command == "compare":
        words = draw(st.lists(paths, max_size=1)) + ["--scenario", draw(st.sampled_from(SCENARIOS))]
        words = words + draw(_opts(*POLICY))
        words = words + draw(st.sampled_from([[], ["--json"]]))
    else:
        words = draw(st.sampled_from([[], ["--json"]]))
    extra = draw(_rarely(st.lists(st.one_of(st.sampled_from(WORDS), NUMBER), min_size=1, max_size=2)))
    return [command, *words, *extra] if command else [*words, *extra]


# the program: hex bytes of random instructions, or text that is not hex at all
STDIN = st.one_of(st.binary(max_size=32).map(bytes.hex), st.text(max_size=20),
                  st.binary(max_size=24).map(lambda b: (b + b"\x95" + bytes(7)).hex()))  # ... then `exit`


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Two more files that exist: one not UTF-8, one of assembly that does not assemble."""
    tmp = tmp_path_factory.mktemp("cli_fuzz")
    binary, text = tmp / "binary.S", tmp / "text.S"
    binary.write_bytes(b"\xff\xfe\x00\x80" * 64)
    text.write_text("mov %rax, %rbx\nnot an instruction\n")
    return {"binary": str(binary), "text": str(text)}


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_command_lines_end_with_a_documented_status(data, capfd, monkeypatch, files):
    monkeypatch.delenv("ARENA_EMU_DEBUG", raising=False)
    args = data.draw(argv(files), label="argv")
    monkeypatch.setattr(sys, "stdin", io.StringIO(data.draw(STDIN, label="stdin")))
    capfd.readouterr()
    try:
        status = main(args)
    except SystemExit as e:
        assert e.code in (0, 2), args
    else:
        assert status in (0, 1, 2, 3), args
    out, err = capfd.readouterr()
    for text in (out, err):
        assert "internal error" not in text and "Traceback" not in text, (args, text)
