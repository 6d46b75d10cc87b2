"""`arena-emu`: run assembled kernel code and BPF programs, and show what their faults do.

Exit status: 0 the call returned, 1 it oopsed, 2 an error (bad input, bad
assembly, unknown symbol), 3 the instruction budget ran out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__
from .corpus import stub
from .errors import AsmError, EmuError
from .exprs import ExprError, evaluate
from .machine import BUDGET, DEFAULT_BUDGET, DEFAULT_RAM, OOPS, RETURNED, CallResult, Machine
from .stream import BPF_STDERR, BPF_STDOUT, STREAM_NAMES

EXIT = {RETURNED: 0, OOPS: 1, "error": 2, BUDGET: 3}


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
    run.add_argument("files", nargs="+", metavar="FILE", help="assembly source (.S)")
    run.add_argument("--entry", required=True, metavar="SYM", help="function to call")
    run.add_argument("--arg", action="append", default=[], metavar="N",
                     help="argument: a number or an expression over symbols (repeat, up to 6)")
    run.add_argument("--map", action="append", default=[], metavar="ADDR[,SIZE]",
                     help="back ADDR with zeroed writable pages first (repeatable)")
    run.add_argument("--budget", type=_positive, default=DEFAULT_BUDGET, metavar="N",
                     help=f"instruction budget (default {DEFAULT_BUDGET})")
    run.add_argument("--ram", type=_size, default=DEFAULT_RAM, metavar="SIZE", help="guest RAM (default 64M)")
    run.add_argument("--syntax", choices=("att", "intel"), default="att", help="assembly syntax (default att)")
    run.add_argument("--json", action="store_true", help="print one JSON object")

    demo = sub.add_parser("demo", help="a guided run: a fault fixed up by the exception table, then an oops")
    demo.add_argument("--json", action="store_true", help="print the two results as JSON")
    return p


def _map_args(m: Machine, specs: list[str]) -> None:
    for spec in specs:
        addr_text, _, size_text = spec.partition(",")
        try:
            addr = int(addr_text, 0)
            size = int(size_text, 0) if size_text else 4096
        except ValueError:
            raise EmuError(f"--map takes ADDR[,SIZE], not '{spec}'") from None
        m.map(addr & ~0xFFF, (size + (addr & 0xFFF) + 0xFFF) & ~0xFFF)


def _arguments(m: Machine, args: list[str]) -> list[int]:
    scope = {s.name: s.address for s in m.kallsyms.symbols()}
    scope.update(m.link_symbols)
    out = []
    for a in args:
        try:
            out.append(evaluate(a, scope))
        except ExprError as e:
            raise EmuError(f"--arg {a}: {e}") from None
    return out


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
        print(f"returned {result.ret:#x} ({result.ret_signed}) after {result.insns} instructions, "
              f"{len(result.faults)} fault(s)")
    elif result.status == OOPS:
        print(result.oops)
        print(f"oops after {result.insns} instructions")
    else:
        print(f"stopped: {result.error}")


def _cmd_run(ns: argparse.Namespace) -> int:
    m = Machine(ram=ns.ram, budget=ns.budget)
    m.load(*ns.files, syntax=ns.syntax)
    _map_args(m, ns.map)
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


def _cmd_demo(ns: argparse.Namespace) -> int:
    """Kernel code reading memory that is not mapped, two ways."""
    m = Machine()
    m.load(stub("maccess.S"), stub("list.S"))
    buf = m.vmalloc(4096)
    hole = 0xFFFF_C900_7777_0000
    first = m.call("copy_from_kernel_nofault", buf, hole, 16)
    m.write_u64(m.symbol("demo_list") + 0x10, hole)  # node_a->next now points at nothing
    second = m.call("list_count", m.symbol("demo_list"))
    if ns.json:
        print(json.dumps([first.to_json(), second.to_json()], indent=2))
        return 0
    print("1. copy_from_kernel_nofault() reads an unmapped address. Its load has an")
    print("   _ASM_EXTABLE entry, so the fault path continues at the fixup label:\n")
    _print_result(first, [buf, hole, 16])
    print("\n2. list_count() follows a list whose next pointer leads to the same hole.")
    print("   No exception-table entry and no handler in page_fault_oops(): an oops.\n")
    _print_result(second, [m.symbol("demo_list")])
    return 0


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    try:
        return {"run": _cmd_run, "demo": _cmd_demo}[ns.command](ns)
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
