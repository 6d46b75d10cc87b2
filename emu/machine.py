"""The machine: the composition root. It builds each subsystem, hands it what it needs, and wires
them together; the work is theirs.

- mm: physical memory, the page tables and access through them, the vmalloc area (emu/mm/);
- x86: the CPUs and their TLBs (emu/x86/);
- kernel: kallsyms, the line table, the loader and the executor of calls (emu/kernel/);
- bpf: arenas, programs, streams and the arena's fault handler (emu/bpf/).

The methods below are the documented Python API; each hands the work to its owner. The
debugger, which controls runs as gdb controls a ptraced task, also asks `executor` why a call
stopped and which fault it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from .asm.image import Image
from .asm.unit import Source
from .bpf.arena import BPF_F_MMAPABLE, Arena
from .bpf.bpf_map import Map
from .bpf.core import BpfProg, BpfProgs
from .bpf.helpers import CONFORMANCE_HELPERS, HELPERS
from .bpf.object_load import LoadedObject, load_object
from .bpf.stream import BPF_STDERR
from .bpf.syscall import BpfSubsystem
from .errors import EmuError
from .kernel.call import BUDGET, ERROR, OOPS, RETURNED, STOPPED, CallResult
from .kernel.events import FaultEvent
from .kernel.executor import COUNTED_PREFIX, Executor
from .kernel.kallsyms import Kallsyms
from .kernel.lines import LineTable
from .kernel.module import Loader
from .mm.layout import PAGE_SIZE
from .mm.memory import KernelMemory
from .mm.physmem import FrameKind, PhysMem
from .mm.vmalloc import VmallocArea
from .policy import DEFAULT_POLICY, Policy
from .x86.cpu import CPU
from .x86.extable import ExceptionTable, ExtableEntry
from .x86.fault import Decision, OopsHandler
from .x86.pgtable import PAGE_KERNEL, PageTables, PageWalk
from .x86.tlb import Tlb
from .x86.unwind_orc import OrcTable

__all__ = ["BUDGET", "COUNTED_PREFIX", "DEFAULT_BUDGET", "DEFAULT_RAM", "ERROR", "OOPS", "RETURNED", "STOPPED",
           "CallResult", "Machine"]

DEFAULT_RAM = 64 << 20
DEFAULT_BUDGET = 10_000_000  # the pytest fixture's: a test suite wants counts that do not depend on load
DEFAULT_TIME_LIMIT = 10.0  # seconds, for what a call runs uncounted


def _delegate(path: str) -> Any:
    """A read-only attribute that is a subsystem's (`executor.cpus`): what the annotation says it is."""
    return property(attrgetter(path))


def _no_kfence(_addr: int, _is_write: bool, _ip: int) -> tuple[bool, str]:
    """The KFENCE slot of page_fault_oops(): this machine has no KFENCE pool."""
    return False, "not a KFENCE address"


class Machine:
    """One emulated machine. Cheap to build: every test can have its own.

    `budget` N counts every instruction of a call and stops it at N; 0 counts none and
    `time_limit` stops a runaway. None (the default) counts a call's first COUNTED_PREFIX
    instructions exactly and runs the rest uncounted, at Unicorn's full speed, under
    `time_limit`; such a call's `insns` is None."""

    def __init__(self, *, ram: int = DEFAULT_RAM, cpus: int = 1, budget: int | None = None,
                 time_limit: float = DEFAULT_TIME_LIMIT,
                 comm: str = "arena-emu", policy: str | Policy = DEFAULT_POLICY, knobs: tuple[str, ...] = ()):
        if not 1 <= cpus <= 8:
            raise EmuError(f"a machine has 1 to 8 CPUs, not {cpus}")
        if budget is not None and budget < 0:
            raise EmuError(f"the instruction budget must be positive (or 0 for none), not {budget}")
        self.policy = policy if isinstance(policy, Policy) else Policy.parse(policy, knobs)
        self.mem = PhysMem(ram)
        self.pgtables = PageTables(self.mem)
        self.memory = KernelMemory(self.mem, self.pgtables)
        self.vmalloc_area = VmallocArea(self.memory)
        self.tlb = Tlb([])
        self.kallsyms = Kallsyms()
        self.extable = ExceptionTable()
        self.line_table = LineTable()
        self.bpf = BpfSubsystem(self.memory, self.vmalloc_area, self.tlb, self.kallsyms, self.line_table,
                                self.policy, comm)
        self.orc = OrcTable()
        self.loader = Loader(self.memory, self.kallsyms, self.extable, self.line_table, self.orc, self.bpf)
        self.executor = Executor(cpus, self.memory, self.kallsyms, self.extable, self.line_table, self.orc, self.bpf,
                                 comm, budget, time_limit)
        self.tlb.cpus.extend(self.executor.cpus)
        self.pgtables.listeners.append(self.tlb.pte_changed)
        self.loader.loaded.append(self.executor.code_loaded)
        self.executor.oops_handlers.append(OopsHandler("kfence_handle_page_fault", "kfence", _no_kfence))
        if self.policy.scratch:
            ex, bpf = self.executor, self.bpf
            self.executor.oops_handlers.append(OopsHandler(
                "bpf_arena_handle_page_fault", "scratch",
                lambda addr, is_write, ip: bpf.bpf_arena_handle_page_fault(ex.fault_context(), addr, is_write, ip)))

    def close(self) -> None:
        """Free the CPUs' Unicorn engines now; the machine cannot run afterwards. Hooks tie a
        machine in reference cycles, so without this it lingers until the cycle collector runs."""
        self.executor.close()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- what the subsystems hold ---------------------------------------------

    cpus: list[CPU] = _delegate("executor.cpus")
    events: list[FaultEvent] = _delegate("executor.events")
    results: dict[int, CallResult] = _delegate("executor.results")
    oops_handlers: list[OopsHandler] = _delegate("executor.oops_handlers")
    budget: int | None = _delegate("executor.budget")
    time_limit: float = _delegate("executor.time_limit")
    comm: str = _delegate("executor.comm")
    maps: dict[int, Arena | Map] = _delegate("bpf.maps")
    arenas: dict[str, Arena] = _delegate("bpf.arenas")
    arena: Arena | None = _delegate("bpf.arena")
    progs: BpfProgs = _delegate("bpf.progs")
    link_symbols: dict[str, int] = _delegate("loader.link_symbols")
    lines: dict[int, tuple[str, int]] = _delegate("line_table.lines")

    @property
    def catch(self) -> Callable[[FaultEvent, Decision | None], bool] | None:
        """A debugger's catchpoint: asked before a fault's handler runs (decision None) and
        before an oops is printed; True stops the call there, to go on with resume()."""
        return self.executor.catch

    @catch.setter
    def catch(self, value: Callable[[FaultEvent, Decision | None], bool] | None) -> None:
        self.executor.catch = value

    @property
    def preempt(self) -> Callable[[int, str], bool] | None:
        """A scheduler's preemption points: asked at each named point of a native kfunc and when a
        fault is taken ("fault"); True stops the CPU there, to go on with resume()."""
        return self.executor.preempt

    @preempt.setter
    def preempt(self, value: Callable[[int, str], bool] | None) -> None:
        self.executor.preempt = value

    # -- memory ---------------------------------------------------------------

    def map(self, va: int, size: int = PAGE_SIZE, prot: int = PAGE_KERNEL,
            kind: FrameKind = FrameKind.DATA) -> list[int]:
        """Back [va, va+size) with fresh zeroed frames; returns their PFNs."""
        return self.memory.map(va, size, prot, kind)

    def unmap(self, va: int, size: int = PAGE_SIZE) -> None:
        """Clear the PTEs and free the frames. No TLB flush: call flush_tlb() for that."""
        self.memory.unmap(va, size)

    def vmalloc(self, size: int, prot: int = PAGE_KERNEL) -> int:
        """Mapped, zeroed kernel memory in the vmalloc area, with an unmapped page after it."""
        return self.vmalloc_area.vmalloc(size, prot)

    def get_vm_area(self, size: int) -> int:
        """get_vm_area(): reserve vmalloc address space, no PTEs, an unmapped page after it."""
        return self.vmalloc_area.get_vm_area(size)

    # Kernel memory through the page tables (not through a CPU's TLB); set_pte() flushes nothing.
    walk: Callable[[int], PageWalk] = _delegate("memory.walk")
    pte: Callable[[int], int] = _delegate("memory.pte")
    set_pte: Callable[[int, int], int] = _delegate("memory.set_pte")
    read: Callable[[int, int], bytes] = _delegate("memory.read")
    write: Callable[[int, bytes], None] = _delegate("memory.write")
    read_u64: Callable[[int], int] = _delegate("memory.read_u64")
    write_u64: Callable[[int, int], None] = _delegate("memory.write_u64")
    read_u64_or_none: Callable[[int], int | None] = _delegate("memory.read_u64_or_none")
    read_cstring: Callable[[int, int], str | None] = _delegate("memory.read_cstring")

    def flush_tlb(self, cpu: int | None = None) -> None:
        """Flush the whole TLB of one CPU, or of every CPU."""
        self.tlb.flush_tlb(cpu)

    def invlpg(self, va: int, cpu: int = 0) -> None:
        self.tlb.invlpg(va, cpu)

    flush_tlb_kernel_range: Callable[[int, int], None] = _delegate("tlb.flush_tlb_kernel_range")

    # -- loading and symbols --------------------------------------------------

    def create_arena(self, max_entries: int, map_extra: int = 0, flags: int = BPF_F_MMAPABLE,
                     name: str = "arena") -> Arena:
        """A BPF arena map. For every file loaded after it, `name` links to the map pointer
        (the kfuncs' p__map), and ARENA_KERN_VM_START / ARENA_USER_VM_START to its addresses;
        the BPF programs loaded after it use it."""
        arena = self.bpf.create_arena(max_entries, map_extra, flags, name)
        self.loader.add_arena_symbols(arena)
        return arena

    def load(self, *paths: str, syntax: str = "att") -> Image:
        """Assemble and link files as one unit against what is already loaded."""
        return self.loader.load(*paths, syntax=syntax)

    def load_source(self, text: str, name: str = "<inline>", syntax: str = "att") -> Image:
        return self.loader.load_sources([Source(name, text)], syntax=syntax)

    def load_sources(self, sources: list[Source], syntax: str = "att") -> Image:
        return self.loader.load_sources(sources, syntax=syntax)

    def load_bpf_insns(self, code: bytes, name: str = "prog", helpers: str = "kernel") -> BpfProg:
        """Load eBPF bytecode (as the verifier hands it to the JIT) as a BPF program named `name`:
        JITed with the current arena, callable by name. `helpers`: the kernel's helpers by id,
        or "conformance" for the bpf_conformance suite's."""
        table = {"kernel": HELPERS, "conformance": CONFORMANCE_HELPERS}.get(helpers)
        if table is None:
            raise EmuError(f"helpers are 'kernel' or 'conformance', not {helpers!r}")
        return self.loader.load_bpf_insns(code, name, table)

    def load_bpf(self, path: str) -> LoadedObject:
        """Open and load a clang-built BPF object as libbpf does: `obj.run("prog")`, `obj.maps`, `obj.bss`."""
        return load_object(path, self.bpf, self.loader, self.call, HELPERS)

    def symbol(self, name: str) -> int:
        return self.loader.symbol(name)

    def symbol_scope(self) -> dict[str, int]:
        """Every symbol and link-time constant, for evaluating expressions over them."""
        return self.loader.symbol_scope()

    symbolize: Callable[[int], str] = _delegate("kallsyms.format")
    is_text: Callable[[int], bool] = _delegate("executor.is_text")
    search_exception_tables: Callable[[int], ExtableEntry | None] = _delegate("extable.search_exception_tables")

    def line_addresses(self, file: str, line: int) -> list[int]:
        """The instructions assembled from FILE:LINE (FILE may be a path's last part), lowest first."""
        return self.line_table.addresses(file, line)

    def stream_text(self, stream_id: int = BPF_STDERR) -> str:
        """What every main program's stream holds, not consumed."""
        return self.bpf.stream_text(stream_id)

    def stack_frames(self, cpu: int) -> list[int]:
        """A CPU's RIP, then the return addresses of a frame-pointer walk of its kernel stack."""
        return self.executor.stack_frames(cpu)

    # -- calls ----------------------------------------------------------------

    def call(self, entry: str | int, *args: int, cpu: int = 0, budget: int | None = None) -> CallResult:
        """Call a function with integer arguments and run it until it returns, oopses,
        or uses up its instruction budget (`budget`, else the machine's) or its time limit.
        Never raises for what the guest does."""
        self.start_call(entry, *args, cpu=cpu, budget=budget)
        try:
            return self.executor.resume(cpu=cpu)
        finally:
            self.executor.finish_call(cpu)

    def start_call(self, entry: str | int, *args: int, cpu: int = 0, budget: int | None = None) -> CallResult:
        """Set a CPU up to call `entry`, stopped at its first instruction; resume() runs it."""
        return self.executor.start_call(entry, args, cpu, budget, self._locate)

    def _locate(self, entry: str | int) -> tuple[int, str]:
        return (entry, self.symbolize(entry)) if isinstance(entry, int) else (self.symbol(entry), entry)

    def resume(self, count: int | None = None, cpu: int | None = None) -> CallResult:
        """Run a started call on: to its end, for at most `count` instructions, or to a debugger
        stop or a preemption point. Its status stays STOPPED while it can go on."""
        return self.executor.resume(count, cpu)

    def resume_until(self, addr: int, cpu: int, why: str = "") -> CallResult:
        """Resume `cpu` until its RIP reaches `addr` (or the call ends, or it stops for another reason)."""
        return self.executor.resume_until(addr, cpu, why)

    def interrupt(self, why: str = "interrupted") -> None:
        """Stop the running call at its next instruction (Ctrl-C)."""
        self.executor.interrupt(why)

    def running_cpus(self) -> list[int]:
        """The CPUs with a started call that can go on."""
        return sorted(self.executor.calls)

    @property
    def current(self) -> CallResult | None:
        """The started call, while it can go on."""
        state = self.executor.call_state
        return state.result if state is not None else None
