"""python -m bench: how fast arena-emu runs code and handles faults, against its baselines.

Every figure is measured in this run, with its baseline beside it: a bare
Unicorn harness (same code, same page tables, no hooks, or one hook that maps
the page) and a native C program whose SIGSEGV handler mprotect()s the page.
Medians over --repeat runs, with min and max. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import unicorn
from unicorn import x86_const as X

from emu import Machine
from emu.bpf.insn import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_DIV,
    BPF_DW,
    BPF_EXIT,
    BPF_JEQ,
    BPF_JGT,
    BPF_JMP,
    BPF_JMP32,
    BPF_JNE,
    BPF_K,
    BPF_LDX,
    BPF_LSH,
    BPF_MOV,
    BPF_MUL,
    BPF_NEG,
    BPF_PROBE_ATOMIC,
    BPF_PROBE_MEM32,
    BPF_STX,
    BPF_SUB,
    BPF_W,
    BPF_X,
    BPF_XOR,
    Insn,
)
from emu.bpf.jit import do_jit
from emu.bpf.object_file import BpfObject
from emu.corpus import bpf_prog
from emu.machine import COUNTED_PREFIX
from emu.mm.layout import CALL_RETURN_ADDR, PAGE_SIZE, stack_top
from emu.mm.physmem import FrameKind
from emu.tools.debugger import Debugger
from emu.x86.pgtable import PAGE_KERNEL, mk_pte
from emu.x86.unicorn_quirks import ExceptionState, enable_long_mode_paging

from . import explore as explore_bench

ROOT = Path(__file__).resolve().parent.parent
BIG = 10**12

HOT = """
	BPF_ARENA(arena, 4)
	.text
/* hot(n, off): n rounds of a load and a store through r12 on an allocated arena page */
SYM_FUNC_START(hot)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
1:	mov	0x0(%rsi,%r12,1), %rax
	add	$1, %rax
	mov	%rax, 0x8(%rsi,%r12,1)
	dec	%rdi
	jnz	1b
	pop	%r12
	leave
	ret
SYM_FUNC_END(hot)
	BPF_PROG(hot)

/* bpf_faults(n, off): a BPF load from each of n pages no one allocated */
SYM_FUNC_START(bpf_faults)
	push	%rbp
	mov	%rsp, %rbp
	push	%r12
	movabs	$ARENA_KERN_VM_START, %r12
1:	mov	0x0(%rsi,%r12,1), %rax
	add	$0x1000, %esi
	dec	%rdi
	jnz	1b
	pop	%r12
	leave
	ret
SYM_FUNC_END(bpf_faults)
	BPF_PROG(bpf_faults)

/* nofault_loop(n, p): a load from each of n unmapped kernel pages, each with an _ASM_EXTABLE fixup */
SYM_FUNC_START(nofault_loop)
1:	mov	(%rsi), %rax
	_ASM_EXTABLE(1b, 2f)
2:	add	$0x1000, %rsi
	dec	%rdi
	jnz	1b
	ret
SYM_FUNC_END(nofault_loop)

/* touch(n, p): a load from each of n pages, for the bare harness */
SYM_FUNC_START(touch)
1:	mov	(%rsi), %rax
	add	$0x1000, %rsi
	dec	%rdi
	jnz	1b
	ret
SYM_FUNC_END(touch)
"""

NATIVE = r"""
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
	(void)sig; (void)ctx;
	mprotect((void *)((unsigned long)si->si_addr & ~4095UL), 4096, PROT_READ | PROT_WRITE);
}

int main(int argc, char **argv)
{
	long n = atol(argv[1]);
	volatile char *base = mmap(NULL, n * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct sigaction sa = { .sa_sigaction = on_segv, .sa_flags = SA_SIGINFO };
	struct timespec t0, t1;
	long sum = 0;

	sigaction(SIGSEGV, &sa, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++)
		sum += base[i * 4096];
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.3f %ld\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / n, sum);
	return 0;
}
"""


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def repeat(n: int, fn) -> list[float]:
    return [fn() for _ in range(n)]


def machine_with(source: str, **kw) -> Machine:
    m = Machine(**kw)
    m.load_source(source, name="bench.S")
    return m


def bare_uc(m: Machine, entry: int, *args: int) -> unicorn.Uc:
    """A Unicorn over the machine's RAM and page tables, registers set for a call, no hooks."""
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map_ptr(0, m.mem.size, unicorn.UC_PROT_ALL, m.mem.host_address)
    enable_long_mode_paging(uc, m.pgtables.root)
    rsp = stack_top(0) - 8
    m.write_u64(rsp, CALL_RETURN_ADDR)
    uc.reg_write(X.UC_X86_REG_RSP, rsp)
    for reg, value in zip((X.UC_X86_REG_RDI, X.UC_X86_REG_RSI), args, strict=False):
        uc.reg_write(reg, value)
    uc.reg_write(X.UC_X86_REG_R12, 0)
    return uc


# -- throughput ---------------------------------------------------------------------

def throughput(runs: int, rounds: int) -> dict:
    """The arena loop in the emulator's three ways of running a call, each against the bare
    harness: the default (the first COUNTED_PREFIX instructions counted, the rest uncounted
    under a time limit), no budget (budget=0: nothing counted) and a budget (Unicorn's count
    on every instruction). Each run times all four back to back, in an order that rotates
    from run to run, and each ratio is the median of those paired ratios: this VM's speed
    drifts by 2x between runs, which a ratio of separate medians would take for a difference."""
    modes: tuple[tuple[str, int | None], ...] = (("default", None), ("free", 0), ("counted", BIG), ("bare", 0))
    rates: dict[str, list[float]] = {name: [] for name, _ in modes}
    for i in range(runs):
        for name, budget in modes[i % 4:] + modes[:i % 4]:
            m = machine_with(HOT, budget=budget)
            off = m.arena.alloc_pages(0, 1) & 0xFFFF_FFFF
            if name == "bare":
                uc = bare_uc(m, m.symbol("hot"), rounds, off)
                t = time.perf_counter()
                uc.emu_start(m.symbol("hot"), CALL_RETURN_ADDR)
            else:
                t = time.perf_counter()
                r = m.call("hot", rounds, off)
                if r.status != "returned":
                    raise RuntimeError(f"hot: expected a return, got {r!r}")
            rates[name].append(insns(rounds) / (time.perf_counter() - t))
            m.close()

    def ratio(name: str) -> dict:
        return stats([e / b for e, b in zip(rates[name], rates["bare"], strict=True)])

    return {"default_insn_per_s": stats(rates["default"]), "emulator_insn_per_s": stats(rates["free"]),
            "budgeted_insn_per_s": stats(rates["counted"]), "bare_insn_per_s": stats(rates["bare"]),
            "default_ratio": ratio("default"), "ratio": ratio("free"), "budgeted_ratio": ratio("counted"),
            "insns": insns(rounds), "counted_prefix": COUNTED_PREFIX}


def insns(rounds: int) -> int:
    """Instructions `hot` runs: a 4-instruction prologue, 5 per round, a 3-instruction epilogue."""
    return 4 + 5 * rounds + 3


# -- the JIT -------------------------------------------------------------------------

# hot_bpf(n, off): hot's loop as bytecode (the verifier's PROBE_MEM32 forms), for the JIT to make
HOT_BPF = b"".join(i.encode() for i in (
    Insn(BPF_LDX | BPF_PROBE_MEM32 | BPF_DW, 0, 2, 0, 0), Insn(BPF_ALU64 | BPF_ADD | BPF_K, 0, 0, 0, 1),
    Insn(BPF_STX | BPF_PROBE_MEM32 | BPF_DW, 2, 0, 8, 0), Insn(BPF_ALU64 | BPF_SUB | BPF_K, 1, 0, 0, 1),
    Insn(BPF_JMP | BPF_JNE | BPF_K, 1, 0, -5, 0), Insn(BPF_JMP | BPF_EXIT)))


def thousand_insns() -> list[Insn]:
    """1,000 instructions of the kinds a program is made of: ALU, branches over them, divisions,
    probe loads and stores, atomics."""
    body: list[Insn] = []
    for i in range(83):
        body += [Insn(BPF_ALU64 | BPF_MOV | BPF_K, 1 + i % 5, 0, 0, i), Insn(BPF_ALU64 | BPF_ADD | BPF_X, 0, 1 + i % 5),
                 Insn(BPF_JMP | BPF_JGT | BPF_K, 0, 0, 3, 1000 + i), Insn(BPF_ALU | BPF_MUL | BPF_K, 0, 0, 0, 3),
                 Insn(BPF_ALU64 | BPF_DIV | BPF_X, 0, 2), Insn(BPF_ALU64 | BPF_LSH | BPF_K, 0, 0, 0, 1),
                 Insn(BPF_LDX | BPF_PROBE_MEM32 | BPF_DW, 3, 2, 8 * (i % 16), 0),
                 Insn(BPF_STX | BPF_PROBE_MEM32 | BPF_W, 2, 3, 4 * (i % 16), 0),
                 Insn(BPF_STX | BPF_PROBE_ATOMIC | BPF_DW, 2, 4, 0, BPF_ADD),
                 Insn(BPF_ALU64 | BPF_XOR | BPF_X, 4, 3), Insn(BPF_JMP32 | BPF_JEQ | BPF_K, 4, 0, 1, 7),
                 Insn(BPF_ALU64 | BPF_NEG, 4)]
    return [*body, *[Insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0)] * 3, Insn(BPF_JMP | BPF_EXIT)]


def jit_figures(runs: int, rounds: int) -> dict:
    """do_jit() of 1,000 instructions, and the JIT's code against hand-written JIT-style code:
    the same arena loop, both run with no budget, timed back to back."""
    insns = thousand_insns()
    jit_ms = repeat(runs * 4, lambda: _timed_ms(lambda: do_jit(insns, 0xFFFF_FFFF_A000_0000,
                                                                 kern_vm_start=0xFFFF_C900_1000_0000)))
    hand, jited = [], []
    for i in range(runs):
        m = machine_with(HOT, budget=0)
        off = m.arena.alloc_pages(0, 1) & 0xFFFF_FFFF
        m.load_bpf_insns(HOT_BPF, "hot_bpf")
        pair = (("hot", hand), ("hot_bpf", jited)) if i % 2 else (("hot_bpf", jited), ("hot", hand))
        for entry, out in pair:
            out.append(_timed_ms(lambda m=m, entry=entry, off=off: m.call(entry, rounds, off)))
    return {"insns": len(insns), "jit_ms": stats(jit_ms), "hand_ms": stats(hand), "jited_ms": stats(jited),
            "loop_ratio": stats([h / j for h, j in zip(hand, jited, strict=True)])}


def object_load(runs: int) -> dict:
    """machine.load_bpf() of bench/thousand.bpf.c (about 1,000 instructions): open, maps, relocation,
    verifier, JIT and install; the build itself (cached) is not timed."""
    from emu.tools.build import BuildError, build_bpf

    try:
        obj = str(build_bpf(ROOT / "bench" / "thousand.bpf.c"))
    except BuildError:
        return {}
    insns = BpfObject.open(obj).programs[0].insn_cnt
    return {"insns": insns, "load_ms": stats(repeat(runs * 4, lambda: _timed_ms(lambda: Machine().load_bpf(obj))))}


def _timed_ms(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


# -- faults --------------------------------------------------------------------------

def per_fault_us(m: Machine, n: int, entry: str, *args: int) -> float:
    """Microseconds per fault of a call that takes n faults and returns."""
    t = time.perf_counter()
    r = m.call(entry, *args)
    elapsed = time.perf_counter() - t
    if len(r.faults) != n or r.status != "returned":
        raise RuntimeError(f"{entry}: expected {n} faults and a return, got {r!r}")
    return elapsed / n * 1e6


def fault_costs(runs: int, n: int, native_us: float | None) -> dict:
    def bpf() -> float:
        return per_fault_us(machine_with(HOT, budget=BIG), n, "bpf_faults", n, 0x100000)

    def scratch() -> float:
        m = Machine(budget=BIG)
        m.load(bpf_prog("scratch.S"))
        return per_fault_us(m, n, "touch_pages", n)

    def extable() -> float:
        return per_fault_us(machine_with(HOT, budget=BIG), n, "nofault_loop", n, 0xFFFF_C900_7000_0000)

    def bare() -> float:
        m = machine_with(HOT, budget=BIG)
        base = 0xFFFF_C900_7000_0000
        uc = bare_uc(m, m.symbol("touch"), n, base)
        exc = ExceptionState(uc)
        frame = m.mem.alloc_frame(FrameKind.DATA)

        def on_fault(_uc, _intno, _data) -> None:
            # The emulator's first step too: clear the in-flight exception (Unicorn issue 1883),
            # which reads CR2 on the way.
            va = exc.take_exception().cr2 & ~(PAGE_SIZE - 1)
            m.pgtables.set_pte(va, mk_pte(frame, PAGE_KERNEL))

        uc.hook_add(unicorn.UC_HOOK_INTR, on_fault)
        t = time.perf_counter()
        uc.emu_start(m.symbol("touch"), CALL_RETURN_ADDR)
        return (time.perf_counter() - t) / n * 1e6

    kinds = (("bpf_extable", bpf), ("scratch", scratch), ("generic_extable", extable))
    times: dict[str, list[float]] = {"bare": [], **{name: [] for name, _ in kinds}}
    for _ in range(runs):  # each run: the bare hook, then every resolution, back to back
        times["bare"].append(bare())
        for name, fn in kinds:
            times[name].append(fn())
    out = {"bare_hook_us": stats(times["bare"]), "native_us": native_us}
    for name, _ in kinds:
        s = stats(times[name])
        out[name] = {"us": s, "ratio_to_bare": stats([t / b for t, b in zip(times[name], times["bare"], strict=True)]),
                     "ratio_to_native": s["median"] / native_us if native_us else None}
    return out


def native_fault_us(runs: int, n: int) -> float | None:
    with tempfile.TemporaryDirectory() as d:
        src, exe = Path(d) / "faults.c", Path(d) / "faults"
        src.write_text(NATIVE)
        try:
            subprocess.run(["cc", "-O2", "-o", str(exe), str(src)], check=True, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        return statistics.median(float(subprocess.run([str(exe), str(n)], capture_output=True, text=True,
                                                      check=True).stdout.split()[0]) for _ in range(runs))


# -- machine, scale, stepping, suite -----------------------------------------------------

def machine_cost(runs: int) -> dict:
    Machine().load(bpf_prog("arena_list.S"))  # warm the assembly cache, as a test suite has it

    def one() -> float:
        t = time.perf_counter()
        m = Machine()
        m.load(bpf_prog("arena_list.S"))
        m.call("arena_list_build", 4)
        return (time.perf_counter() - t) * 1e3

    return stats(repeat(runs * 10, one))


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def scale(runs: int) -> dict:
    """Allocate all 4 GiB of an arena's pages in one call, then free them in one call; the
    free against the alloc is the median of each run's ratio."""
    alloc, free, extra = [], [], []
    for _ in range(runs):
        m = Machine(ram=(4 << 30) + (64 << 20))
        a = m.create_arena(1 << 20, 1 << 32)
        before = rss_bytes()
        t = time.perf_counter()
        assert a.alloc_pages(0, 1 << 20) == 1 << 32
        alloc.append(time.perf_counter() - t)
        extra.append(rss_bytes() - before)
        t = time.perf_counter()
        a.free_pages(1 << 32, 1 << 20)
        free.append(time.perf_counter() - t)
        m.close()
        del m, a
    return {"alloc_s": stats(alloc), "free_s": stats(free), "rss_growth_bytes": stats(extra),
            "rss_growth_of_4gib": statistics.median(extra) / (1 << 32),
            "free_to_alloc": stats([f / a for f, a in zip(free, alloc, strict=True)])}


SPIN = "SYM_FUNC_START(spin)\n1:\tinc %rax\n\tjmp 1b\nSYM_FUNC_END(spin)\n"


def stepping(runs: int, steps: int) -> dict:
    def api() -> float:
        m = machine_with(SPIN, budget=BIG)
        m.start_call("spin")
        t = time.perf_counter()
        for _ in range(steps):
            m.resume(1)
        return steps / (time.perf_counter() - t)

    def repl() -> float:
        with tempfile.NamedTemporaryFile("w", suffix=".S", delete=False) as f:
            f.write(SPIN)
        d = Debugger([f.name], "spin", budget=BIG)
        d.execute("set context off")
        n = steps // 10
        t = time.perf_counter()
        for _ in range(n):
            d.execute("si")
        os.unlink(f.name)
        return n / (time.perf_counter() - t)

    return {"api_per_s": stats(repeat(runs, api)), "repl_per_s": stats(repeat(runs, repl))}


def suite() -> dict:
    out = {}
    for name, extra in (("serial", []), ("parallel", ["-n", "auto"])):
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra], cwd=ROOT,
                           capture_output=True, text=True)
        out[name] = {"s": time.perf_counter() - t, "result": p.stdout.strip().splitlines()[-1] if p.stdout else ""}
    return out


# -- report ------------------------------------------------------------------------------

def fmt(s: dict, unit: str = "", scale_by: float = 1.0, digits: int = 1) -> str:
    return (f"{s['median'] * scale_by:,.{digits}f}{unit} "
            f"[{s['min'] * scale_by:,.{digits}f}..{s['max'] * scale_by:,.{digits}f}]")


def table(r: dict) -> str:
    rows = [("figure", "emulator: median [min..max]", "baseline", "ratio", "target")]
    t = r["throughput"]
    bare = fmt(t["bare_insn_per_s"], " Minsn/s", 1e-6) + " bare"
    rows.append(("throughput, default", fmt(t["default_insn_per_s"], " Minsn/s", 1e-6), bare,
                 fmt(t["default_ratio"], digits=2), ">= 0.80"))
    rows.append(("throughput, no budget", fmt(t["emulator_insn_per_s"], " Minsn/s", 1e-6), bare,
                 fmt(t["ratio"], digits=2), ""))
    rows.append(("throughput, with a budget", fmt(t["budgeted_insn_per_s"], " Minsn/s", 1e-6), bare,
                 fmt(t["budgeted_ratio"], digits=2), ""))
    f = r["faults"]
    for key, label in (("bpf_extable", "fault: BPF extable fixup"), ("scratch", "fault: scratch recovery"),
                       ("generic_extable", "fault: generic extable")):
        native = f" / {f[key]['ratio_to_native']:.0f}x native" if f[key]["ratio_to_native"] else ""
        rows.append((label, fmt(f[key]["us"], " us"), fmt(f["bare_hook_us"], " us") + " bare hook",
                     fmt(f[key]["ratio_to_bare"], "x") + native, "<= 1.5x (~20 us)"))
    if f["native_us"]:
        rows.append(("fault: native SIGSEGV+mprotect", f"{f['native_us']:.2f} us", "", "", ""))
    rows.append(("machine + load + call", fmt(r["machine_ms"], " ms", digits=2), "", "", "<= 5 ms"))
    s = r["scale"]
    rows.append(("alloc all 4 GiB of pages", fmt(s["alloc_s"], " s", digits=2), "", "", "<= 3 s"))
    rows.append(("free all 4 GiB of pages", fmt(s["free_s"], " s", digits=2), fmt(s["alloc_s"], " s", digits=2) +
                 " alloc", fmt(s["free_to_alloc"], "x", digits=2), "<= 1.5x"))
    rows.append(("RSS growth for 4 GiB", fmt(s["rss_growth_bytes"], " MiB", 1 / (1 << 20)),
                 "", f"{s['rss_growth_of_4gib'] * 100:.2f}%", "<= 2%"))
    j = r["jit"]
    rows.append((f"JIT of {j['insns']:,} instructions", fmt(j["jit_ms"], " ms", digits=2), "", "", "<= 50 ms"))
    rows.append(("arena loop, JITed bytecode", fmt(j["jited_ms"], " ms", digits=1),
                 fmt(j["hand_ms"], " ms", digits=1) + " hand-written", fmt(j["loop_ratio"], digits=2), ">= 0.90"))
    if r["object_load"]:
        o = r["object_load"]
        rows.append((f"BPF object load ({o['insns']:,} insns)", fmt(o["load_ms"], " ms", digits=1), "", "",
                     "<= 100 ms"))
    st = r["stepping"]
    rows.append(("stepi, Python API", fmt(st["api_per_s"], "/s", digits=0), "", "", ">= 20,000/s"))
    rows.append(("stepi, REPL scripted", fmt(st["repl_per_s"], "/s", digits=0), "", "", ""))
    if r.get("suite"):
        for name, v in r["suite"].items():
            rows.append((f"test suite, {name}", f"{v['s']:.1f} s", v["result"], "", ""))
    rows.extend(explore_bench.rows(r["explore"]))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="runs per figure (default 5)")
    p.add_argument("--faults", type=int, default=400, help="faults per fault figure (default 400)")
    p.add_argument("--rounds", type=int, default=5_000_000, help="loop rounds of the throughput figure")
    p.add_argument("--no-suite", action="store_true", help="skip timing the test suite")
    p.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where to write the results")
    ns = p.parse_args(argv)
    native = native_fault_us(ns.repeat, 20_000)
    results = {
        "machine": {"python": platform.python_version(), "unicorn": unicorn.__version__,
                    "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "system": platform.platform()},
        "throughput": throughput(ns.repeat, ns.rounds),
        "faults": fault_costs(ns.repeat, ns.faults, native),
        "machine_ms": machine_cost(ns.repeat),
        "scale": scale(ns.repeat),
        "stepping": stepping(ns.repeat, 20_000),
        "jit": jit_figures(ns.repeat, ns.rounds),
        "object_load": object_load(ns.repeat),
        "explore": explore_bench.figures(ns.repeat),
    }
    if not ns.no_suite:
        results["suite"] = suite()
    print(table(results))
    Path(ns.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {ns.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
