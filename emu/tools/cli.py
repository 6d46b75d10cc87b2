"""`arena-emu`: run assembled kernel code and BPF programs, and show what their faults do.

Exit status: 0 the call returned (or the command did its work), 1 it oopsed,
2 an error (bad arguments, bad assembly, an unknown symbol, a file that cannot
be read), 3 the instruction budget or the time limit ran out, 130 interrupted
(Ctrl-C), 141 the reader of the output went away, 70 a defect of arena-emu
itself (please report it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .. import __version__
from ..asm.exprs import ExprError, evaluate
from ..bpf.elf import is_bpf_object
from ..bpf.stream import BPF_STDERR, BPF_STDOUT, STREAM_NAMES
from ..corpus import bpf_prog, source_candidates, stub
from ..errors import AsmError, EmuError
from ..machine import (
    BUDGET,
    COUNTED_PREFIX,
    DEFAULT_BUDGET,
    DEFAULT_RAM,
    DEFAULT_TIME_LIMIT,
    OOPS,
    RETURNED,
    CallResult,
    Machine,
)
from ..mm.layout import MASK64
from ..policy import DEFAULT_POLICY, KNOBS, POLICIES, SCRATCH, Policy
from ..policy import OOPS as OOPS_POLICY
from . import cluster
from .build import CompileError, build_bpf, build_kernel
from .conformance import parse_hex, run_plugin
from .debugger import Debugger
from .explore import Entry, Exploration, Schedule, explore, sample, schedules
from .explore import Scenario as SmpScenario
from .loading import built
from .prog_dump import prog_dump
from .progress import Progress
from .reduction import reduced
from .repl import Session, banner, use_color
from .scenario import load_scenarios
from .symfile import write_symbol_file

EXIT = {RETURNED: 0, OOPS: 1, "error": 2, BUDGET: 3}
FILES_HELP = ("kernel code (.S, x86-64 .o, kernel .c: built first), then at most one BPF object (.bpf.o, or its "
              ".bpf.c: built first)")


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: '{text}'") from None


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        value = int(t[:-1], 0) * units[t[-1]] if t and t[-1] in units else int(t, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: '{text}' (try 64M)") from None
    if value <= 0 or value % 4096:
        raise argparse.ArgumentTypeError(f"size must be a positive multiple of 4096: '{text}'")
    return value


BUDGET_HELP = (f"count every instruction and stop at N (default: count the first {COUNTED_PREFIX:,}, then run "
               f"uncounted at full speed under a {DEFAULT_TIME_LIMIT:g} s time limit; 0: count none)")


def _budget(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no instruction count) or positive: '{text}'")
    return value


def _positive(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: '{text}'")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="arena-emu",
        description="Instruction-level emulator for the BPF arena and its page-fault recovery.",
        epilog="exit status: 0 returned, 1 oops, 2 error, 3 instruction budget exhausted")
    p.add_argument("--version", action="version", version=f"arena-emu {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="assemble files, call a function, print what happened",
                         description="Assemble FILEs as one link, call ENTRY with integer arguments in the "
                                     "SysV registers, and run it to its return, an oops, or the budget.")
    run.add_argument("files", nargs="+", metavar="FILE", help=FILES_HELP)
    run.add_argument("--entry", metavar="SYM", help="function to call (a BPF object's programs run with --prog)")
    run.add_argument("--prog", action="append", default=[], metavar="NAME",
                     help="with a BPF object (.bpf.o): a program to run as BPF_PROG_TEST_RUN runs it, in order "
                          "(repeatable; maps and globals persist; default: the object's only program)")
    run.add_argument("--ctx", metavar="HEX", help="with --prog: the context of a syscall program, as hex bytes")
    run.add_argument("--data", metavar="HEX", help="with --prog: the packet of an xdp or tc program, as hex bytes")
    run.add_argument("--arg", action="append", default=[], metavar="N",
                     help="argument: a number or an expression over symbols (repeat, up to 6)")
    run.add_argument("--map", action="append", default=[], metavar="ADDR[,SIZE]",
                     help="back ADDR (page-aligned) with zeroed writable pages first, SIZE bytes rounded up to "
                          "whole pages (default one page; repeatable)")
    run.add_argument("--budget", type=_budget, metavar="N", help=BUDGET_HELP)
    run.add_argument("--ram", type=_size, default=DEFAULT_RAM, metavar="SIZE", help="guest RAM (default 64M)")
    run.add_argument("--syntax", choices=("att", "intel"), default="att", help="assembly syntax (default att)")
    run.add_argument("--json", action="store_true", help="print one JSON object")
    _policy_args(run)

    debug = sub.add_parser("debug", help="a gdb-like debugger stopped at the entry of a call",
                           description="Assemble FILEs, set up a call to ENTRY and stop at its first instruction. "
                                       "Commands come from -x FILE and -ex CMD first, then from the terminal "
                                       "(or standard input, when it is not one).")
    debug.add_argument("files", nargs="+", metavar="FILE", help=FILES_HELP)
    debug.add_argument("--entry", required=True, metavar="SYM", help="function to call (or a BPF object's program)")
    debug.add_argument("--arg", action="append", default=[], metavar="N", help="argument (repeat, up to 6)")
    debug.add_argument("--budget", type=_budget, default=DEFAULT_BUDGET, metavar="N",
                       help=f"instruction budget (default {DEFAULT_BUDGET}; the debugger counts every instruction)")
    debug.add_argument("--syntax", choices=("att", "intel"), default="att", help="assembly syntax")
    debug.add_argument("-x", dest="script", metavar="FILE", help="run the commands in FILE first")
    debug.add_argument("-ex", dest="commands", action="append", default=[], metavar="CMD",
                       help="run CMD first (repeatable, after -x)")
    debug.add_argument("--batch", action="store_true", help="leave after -x and -ex, as gdb -batch")
    debug.add_argument("--gdb", type=_port, metavar="PORT",
                       help="serve the gdb remote protocol on 127.0.0.1:PORT instead of a prompt")
    debug.add_argument("--once", action="store_true",
                       help="with --gdb: end when the first gdb detaches (by default the target stays as it is "
                            "for the next gdb, as with QEMU, and gdb's kill ends the server)")
    debug.add_argument("--cpus", type=_positive, default=1, metavar="N", help="CPUs (default 1)")
    debug.add_argument("--setup", metavar="SYM", help="a call made on CPU 0 before the others start")
    for i in range(1, 8):
        debug.add_argument(f"--entry{i}", metavar="SYM",
                           help="the call CPU 1 starts (and --entry2 ... for more CPUs)" if i == 1
                           else argparse.SUPPRESS)
    _policy_args(debug)

    explore = sub.add_parser("explore", help="run a multi-CPU scenario under many schedules and group the outcomes",
                             description="Start one call per CPU (--entry0, --entry1, ...), interleave them by "
                                         "every schedule of up to --bound steps (or --samples random ones), and "
                                         "print each distinct outcome with a schedule that replays it. "
                                         "--schedule runs one schedule and prints its faults.")
    explore.add_argument("files", nargs="+", metavar="FILE", help=FILES_HELP)
    explore.add_argument("--cpus", type=_positive, default=2, metavar="N", help="CPUs (default 2)")
    for i in range(8):
        explore.add_argument(f"--entry{i}", metavar="SYM",
                             help=f"the call CPU {i} makes" if i < 2 else argparse.SUPPRESS)
    explore.add_argument("--setup", metavar="SYM", help="a call made on CPU 0 before the others start")
    explore.add_argument("--probe", metavar="EXPR", help="an address whose u64 is part of the outcome")
    explore.add_argument("--bound", type=_positive, default=2, metavar="N", help="steps per schedule (default 2)")
    explore.add_argument("--samples", type=_positive, metavar="N", help="random schedules instead of all")
    explore.add_argument("--seed", type=_int, default=0, metavar="S", help="seed of --samples (default 0)")
    explore.add_argument("--schedule", metavar="STEPS", help="run this one schedule, e.g. '1:@fault 0:12 1:*'")
    explore.add_argument("--workers", type=_positive, default=os.cpu_count() or 1, metavar="N",
                         help="processes (default: one per core)")
    explore.add_argument("--exhaustive", action="store_true",
                         help="every schedule up to --bound, without the partial-order reduction")
    explore.add_argument("--cluster", metavar="ADDRESS",
                         help="run on the Dask scheduler at ADDRESS (e.g. tcp://10.0.0.1:8786) instead of --workers")
    explore.add_argument("--json", action="store_true", help="print the counts and outcomes as JSON")
    _policy_args(explore)

    build = sub.add_parser("build", help="compile a BPF program (X.bpf.c), or kernel C with --kernel",
                           description="Compile X.bpf.c with clang's BPF backend ($CLANG, clang 18+ or zig's) "
                                       "and the arena selftests' flags, against the header arena-emu ships; "
                                       "or, with --kernel, a C file as the kernel builds its objects (gcc, clang "
                                       "or zig cc; -mcmodel=kernel, no red zone, no SSE, frame pointers).")
    build.add_argument("file", metavar="FILE", help="C source")
    build.add_argument("--kernel", action="store_true", help="kernel code: an x86-64 relocatable object")
    build.add_argument("-o", dest="output", metavar="OUT", help="the object to write (default: FILE with .o)")

    prog = sub.add_parser("prog", help="look at a BPF object's programs as bpftool prog does",
                          description="Load a BPF object (X.bpf.o, or X.bpf.c built first) as `run` does and show "
                                      "one of its programs.")
    prog_sub = prog.add_subparsers(dest="prog_command", metavar="SUBCOMMAND")
    prog_sub.required = True
    dump = prog_sub.add_parser(
        "dump", help="a program after the verifier (xlated) or its x86 code (jited), as bpftool prog dump prints it",
        description="Print a program as `bpftool prog dump xlated|jited` does: the instructions the verifier "
                    "handed the JIT, with their C lines and function prototypes, or the JIT's x86 code (capstone, "
                    "AT&T syntax) per function. Not bpftool's: each x86 instruction with an exception-table entry "
                    "ends in `; extable: fixup ..., dst REG, arena reg REG, off N` (what ex_handler_bpf() reads).")
    dump.add_argument("mode", choices=("xlated", "jited"), help="what to dump")
    dump.add_argument("files", nargs="+", metavar="FILE",
                      help="kernel code the object's kfuncs live in, if any (.S, .o, .c, loaded first, as `run` "
                           "loads them), then the BPF object (.bpf.o) or its C (.bpf.c, built first)")
    dump.add_argument("--prog", metavar="NAME", help="the program (default: the object's only one)")
    dump.add_argument("--linum", action="store_true", help="add each C line's file, line and column (bpftool linum)")
    dump.add_argument("--opcodes", action="store_true", help="the bytes of each instruction (bpftool opcodes)")
    dump.add_argument("--json", action="store_true", help="print JSON, as bpftool -j")

    plugin = sub.add_parser("conformance-plugin", help="run one test of the BPF conformance suite (its plugin "
                                                        "protocol)",
                            description="Read a BPF program as hex bytes on standard input, run it JITed with "
                                        "r1 = MEM's address and r2 = its length, and print r0 in hex, as the "
                                        "bpf_conformance runner expects of a plugin.")
    plugin.add_argument("memory", nargs="?", metavar="MEM", help="the test's memory, as hex bytes")

    demo = sub.add_parser("demo", help="a guided run: a kfunc fault recovered by the scratch page, then the oops "
                                       "it was before")
    demo.add_argument("--json", action="store_true", help="print the two results as JSON")

    compare = sub.add_parser("compare", help="run every scenario under every policy and print the outcomes",
                             description="Run the scenarios in scenarios/ under each policy: a table with a row "
                                         "per scenario and a column per policy.")
    compare.add_argument("files", nargs="*", metavar="FILE",
                         help="scenario files (.toml) to run beside the shipped ones")
    compare.add_argument("--scenario", action="append", default=[], metavar="NAME",
                         help="only this scenario (repeatable)")
    compare.add_argument("--policy", action="append", default=[], choices=POLICIES,
                         help="only this policy's column (repeatable; default all)")
    compare.add_argument("--knob", action="append", default=[], choices=sorted(KNOBS), metavar="KNOB",
                         help="turn a knob on in every column (repeatable): " + ", ".join(sorted(KNOBS)))
    compare.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    return p


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: '{text}'")
    return value


def _policy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", choices=POLICIES, default=DEFAULT_POLICY,
                   help=f"what a kernel fault on an unmapped arena page does (default {DEFAULT_POLICY})")
    p.add_argument("--knob", action="append", default=[], choices=sorted(KNOBS), metavar="KNOB",
                   help="; ".join(f"{k}: {v}" for k, v in KNOBS.items()) + " (repeatable)")


def _map_args(m: Machine, specs: list[str]) -> None:
    for spec in specs:
        addr_text, _, size_text = spec.partition(",")
        try:
            addr = int(addr_text, 0)
            size = int(size_text, 0) if size_text else 4096
        except ValueError:
            raise EmuError(f"--map takes ADDR[,SIZE], not '{spec}'") from None
        if addr % 4096 or not 0 <= addr <= MASK64:
            raise EmuError(f"--map {spec}: ADDR must be a page-aligned 64-bit address")
        if size <= 0:
            raise EmuError(f"--map {spec}: SIZE must be positive")
        m.map(addr, (size + 0xFFF) & ~0xFFF)


def _arguments(m: Machine, args: list[str]) -> list[int]:
    scope = m.symbol_scope()
    out = []
    for a in args:
        try:
            value = evaluate(a, scope)
        except ExprError as e:
            raise EmuError(f"--arg {a}: {e}") from None
        if not -(1 << 63) <= value <= MASK64:
            raise EmuError(f"--arg {a}: does not fit in a 64-bit register")
        out.append(value & MASK64)
    return out


def _sources(files: list[str]) -> list[str]:
    """The files as named, or the shipped bpf_progs/ and kernel_stubs/ copies of them; C is built
    first: a BPF program (`.bpf.c`) for the BPF target, kernel C (`.c`) with the kernel's flags."""
    return [built(str(next((c for c in source_candidates(f) if c.is_file()), f))) for f in files]


def _read_streams(m: Machine, entry: str) -> dict[str, str] | None:
    """What `bpftool prog tracelog` would print for a BPF program: both streams, consumed."""
    prog = m.progs.by_name.get(entry)
    if prog is None:
        return None
    return {STREAM_NAMES[i]: prog.stream_read(i).decode(errors="replace") for i in (BPF_STDOUT, BPF_STDERR)}


def _print_streams(streams: dict[str, str] | None) -> None:
    for name, text in (streams or {}).items():
        if text:
            print(f"--- BPF {name} ---")
            print(text, end="" if text.endswith("\n") else "\n")


def _print_result(result: CallResult, args: list[int]) -> None:
    shown = ", ".join(f"{a:#x}" for a in args)
    print(f"call {result.entry}({shown})")
    for event in result.faults:
        print(event.story())
    if result.status == RETURNED:
        print(f"returned {result.ret:#x} ({result.ret_signed}) {result.after}, "
              f"{len(result.faults)} fault(s)")
    elif result.status == OOPS:
        print(result.oops)
        print(f"oops {result.after}")
    else:
        print(f"stopped: {result.error}")


def _cmd_run(ns: argparse.Namespace) -> int:
    m = Machine(ram=ns.ram, budget=ns.budget, policy=Policy.parse(ns.policy, ns.knob))
    files = _sources(ns.files)
    objects = [f for f in files if is_bpf_object(f)]
    m.load(*[f for f in files if f not in objects], syntax=ns.syntax)
    _map_args(m, ns.map)
    if objects:
        return _run_bpf_object(ns, m, objects)
    args = _arguments(m, ns.arg)
    result = m.call(ns.entry, *args)
    streams = _read_streams(m, ns.entry)
    if ns.json:
        out = result.to_json()
        if streams is not None:
            out["streams"] = streams
        print(json.dumps(out, indent=2))
    else:
        _print_result(result, args)
        _print_streams(streams)
    return EXIT[result.status]


def _names_bpf_object(name: str) -> bool:
    """A file on the command line that is (or whose shipped copy is) a BPF object, or its C."""
    if name.endswith(".bpf.c"):
        return True
    try:
        return any(is_bpf_object(str(c)) for c in source_candidates(name) if c.is_file())
    except EmuError:
        return False


def _run_bpf_object(ns: argparse.Namespace, m: Machine, objects: list[str]) -> int:
    """Load the object once (after the kernel files) and run each --prog on it, in order."""
    if len(objects) > 1:
        raise EmuError(f"run takes one BPF object, not {len(objects)}: {', '.join(objects)}")
    if ns.entry is not None or ns.arg:
        raise EmuError("a BPF object's programs run with --prog (and --ctx), not --entry/--arg")
    obj = m.load_bpf(objects[0])
    progs = ns.prog or [None]
    ctx = parse_hex(ns.ctx, "--ctx") if ns.ctx else b""
    data = parse_hex(ns.data, "--data") if ns.data else b""
    runs = []
    for name in progs:
        result = obj.run(name, ctx=ctx, data=data)
        runs.append((result, _read_streams(m, result.entry)))
    if ns.json:
        docs = [dict(r.to_json(), **({"streams": st} if st is not None else {})) for r, st in runs]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        for result, streams in runs:
            _print_result(result, [])
            _print_streams(streams)
    worst = max(runs, key=lambda run: EXIT[run[0].status])[0]
    return EXIT[worst.status]


def _cmd_build(ns: argparse.Namespace) -> int:
    """Build a file as named, or the shipped bpf_progs/ or kernel_stubs/ copy of it; the object of a
    shipped copy goes to the current directory, not into the installed package."""
    src = next((c for c in source_candidates(ns.file) if c.is_file()), None) if ns.file else None
    if src is None:
        raise EmuError(f"cannot read {ns.file}: no such file")
    out = Path(ns.output) if ns.output else (src if src == Path(ns.file) else Path(src.name)).with_suffix(".o")
    if ns.kernel:
        print(build_kernel(src, out))
    elif src.name.endswith(".bpf.c"):
        print(build_bpf(src, out))
    else:
        raise EmuError(f"{ns.file}: a BPF program is a .bpf.c file; kernel C is built with --kernel")
    return 0


def _cmd_prog(ns: argparse.Namespace) -> int:
    """`prog dump`: the kernel files and the object loaded on a fresh machine, one program dumped."""
    *kernel, path = _sources(ns.files)
    named = ns.files[-1]
    if not Path(path).is_file():
        raise EmuError(f"cannot read {named}: no such file")
    if not is_bpf_object(path):
        raise EmuError(f"{named}: not a BPF object (an ELF file for EM_BPF, as clang -target bpf makes)")
    m = Machine()
    if kernel:
        m.load(*kernel)
    obj = m.load_bpf(path)
    if not obj.programs:
        raise EmuError(f"{named} has no programs")
    name = ns.prog
    if name is None:
        if len(obj.programs) != 1:
            raise EmuError(f"{named} has {len(obj.programs)} programs: name one with --prog "
                           f"({', '.join(obj.programs)})")
        name = next(iter(obj.programs))
    dump = prog_dump(m.bpf, obj, name, ns.mode, opcodes=ns.opcodes, linum=ns.linum)
    sys.stdout.write(json.dumps(dump.json, indent=2) + "\n" if ns.json else dump.text)
    return 0


def _cmd_conformance_plugin(ns: argparse.Namespace) -> int:
    print(f"{run_plugin(sys.stdin.read(), ns.memory):x}")
    return 0


def _cmd_demo(ns: argparse.Namespace) -> int:
    """A kfunc touching an arena page no one allocated, under the merged kernel and before it."""
    runs = []
    for policy in (SCRATCH, OOPS_POLICY):
        m = Machine(policy=policy)
        m.load(stub("arena_kfuncs.S"))
        obj = m.load_bpf(bpf_prog("scratch.bpf.o"))  # shipped built: the demo needs no compiler
        result: CallResult = obj.run("arena_arg_unpopulated")
        runs.append((m, result, _read_streams(m, "arena_arg_unpopulated")))
    if ns.json:
        print(json.dumps([dict(r.to_json(), policy=str(m.policy), streams=st) for m, r, st in runs], indent=2))
        return 0
    (m, recovered, streams), (_, oopsed, _) = runs
    print("A BPF program hands a kfunc a pointer into the second page of a 2-page object;")
    print("only the first page was allocated (arena_kfunc.c: arena_arg_unpopulated).\n")
    print("1. Policy `scratch`, the merged kernel: page_fault_oops() calls")
    print("   bpf_arena_handle_page_fault(), which maps the arena's scratch page, reports to")
    print("   the program's stderr, and the load restarts:\n")
    _print_result(recovered, [])
    _print_streams(streams)
    print("\n2. Policy `oops`, the kernel before the scratch series: the same load oopses.\n")
    print(f"call {oopsed.entry}()")
    print("\n".join(oopsed.oops.splitlines()[:5]))  # type: ignore[union-attr]  # policy oops: it oopsed
    print("...")
    return 0


def _cmd_debug(ns: argparse.Namespace) -> int:
    others = {i: getattr(ns, f"entry{i}") for i in range(1, 8) if getattr(ns, f"entry{i}")}
    if any(cpu >= ns.cpus for cpu in others):
        raise EmuError(f"an --entryN names a CPU beyond --cpus {ns.cpus}")
    d = Debugger(_sources(ns.files), ns.entry, ns.arg, policy=Policy.parse(ns.policy, ns.knob), syntax=ns.syntax,
                 budget=ns.budget, color=use_color(), cpus=ns.cpus, others=others, setup=ns.setup)
    if ns.gdb is not None:
        from .gdbstub import serve
        try:
            return serve(d, ns.gdb, reattach=not ns.once, symbols=write_symbol_file(d.m))
        except OSError as e:
            raise EmuError(f"--gdb {ns.gdb}: cannot listen on 127.0.0.1:{ns.gdb}: {e.strerror or e}") from None
    session = Session(d)
    session.say(banner(d))
    if ns.script:
        try:
            lines = Path(ns.script).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise EmuError(f"cannot read {ns.script}: {getattr(e, 'strerror', None) or e}") from None
        if not session.run_script(lines):
            return 0
    if not session.run_script(ns.commands) or ns.batch:
        return 1 if ns.batch and session.failed else 0
    if sys.stdin.isatty() and sys.stdout.isatty():
        session.interact()
    else:
        session.run_script(sys.stdin, from_tty=True)
    return 0


def _cmd_explore(ns: argparse.Namespace) -> int:
    entries = tuple(Entry(i, getattr(ns, f"entry{i}")) for i in range(min(ns.cpus, 8)) if getattr(ns, f"entry{i}"))
    if not entries:
        raise EmuError("explore needs at least one --entryN")
    if any(e.cpu >= ns.cpus for e in entries):
        raise EmuError(f"an --entryN names a CPU beyond --cpus {ns.cpus}")
    scenario = SmpScenario(tuple(_sources(ns.files)), entries, policy=Policy.parse(ns.policy, ns.knob),
                           setup=Entry(0, ns.setup) if ns.setup else None, probe=ns.probe, cpus=ns.cpus)
    if ns.schedule is not None:
        schedule = Schedule.parse(ns.schedule)
        beyond = [str(step) for step in schedule.steps if step.cpu >= ns.cpus]
        if beyond:
            raise EmuError(f"--schedule: {', '.join(beyond)} names a CPU beyond --cpus {ns.cpus}")
        outcome, m = scenario.run(schedule)
        for event in m.events:
            print(event.summary())
        print(f"schedule '{schedule}': {outcome}")
        return 0
    progress = Progress() if sys.stderr.isatty() else None
    try:
        result = _exploration(ns, scenario, progress)
    finally:
        if progress is not None:
            progress.done()
    if ns.json:
        kind = "sampled" if ns.samples else "exhaustive" if ns.exhaustive else "partial-order"
        print(json.dumps({"bound": ns.bound, "reduction": kind, **result.to_json()}, indent=2))
    else:
        print(result.report())
    return 0


def _exploration(ns: argparse.Namespace, scenario: SmpScenario, progress: Progress | None) -> Exploration:
    if ns.samples or ns.exhaustive:
        if ns.cluster:
            raise EmuError("--cluster runs the reduced exploration: not with --samples or --exhaustive")
        plan = sample(scenario, ns.samples, ns.seed, ns.bound) if ns.samples else schedules(scenario, ns.bound)
        return explore(scenario, plan, workers=ns.workers, progress=progress)
    with cluster.dask(ns.cluster) if ns.cluster else cluster.local(ns.workers) as run:
        return reduced(scenario, ns.bound, run, progress)


def _cmd_compare(ns: argparse.Namespace) -> int:
    scenarios = load_scenarios(ns.files)
    unknown = set(ns.scenario) - {s.name for s in scenarios}
    if unknown:
        raise EmuError(f"no scenario {', '.join(sorted(unknown))}: there are {', '.join(s.name for s in scenarios)}")
    scenarios = [s for s in scenarios if not ns.scenario or s.name in ns.scenario]
    policies = [Policy.parse(p, ns.knob) for p in ns.policy or POLICIES]
    columns = [str(p) for p in policies]
    rows = [(s, [s.run(p)[0] for p in policies]) for s in scenarios]
    if ns.json:
        print(json.dumps([{"scenario": s.name, "title": s.title,
                           "outcomes": {c: o.to_json() for c, o in zip(columns, outs, strict=True)}}
                          for s, outs in rows], indent=2))
        return 0
    table = [["scenario", *columns]] + [[s.name, *(o.cell(s.meaning) for o in outs)] for s, outs in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for i, r in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    ns = parser.parse_args(argv)
    if ns.command == "run" and ns.entry is None and not any(map(_names_bpf_object, ns.files)):
        parser.error("run needs --entry SYM (or a BPF object, whose programs run with --prog NAME)")
    try:
        return {"run": _cmd_run, "demo": _cmd_demo, "compare": _cmd_compare, "debug": _cmd_debug,
                "explore": _cmd_explore, "build": _cmd_build, "prog": _cmd_prog,
                "conformance-plugin": _cmd_conformance_plugin}[ns.command](ns)
    except CompileError as e:  # the compiler's own words, as it printed them
        print(str(e), file=sys.stderr)
        return EXIT["error"]
    except EmuError as e:
        if getattr(ns, "json", False):
            print(json.dumps({"status": "error", "error": str(e)}, indent=2))
        else:
            print(str(e) if isinstance(e, AsmError) else f"arena-emu: {e}", file=sys.stderr)
        return EXIT["error"]
    except KeyboardInterrupt:
        print("arena-emu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `arena-emu ... | head`: the reader is gone, as with any Unix tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # a bug of ours: one line for the user, the traceback on request
        if os.environ.get("ARENA_EMU_DEBUG"):
            raise
        print(f"arena-emu: internal error: {type(e).__name__}: {e} (set ARENA_EMU_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
