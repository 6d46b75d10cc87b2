"""The machine: RAM, page tables, CPUs, loaded code, and calls run to completion.

A call runs in Unicorn's compiled core with an instruction budget; Python runs
only when a CPU takes an exception (the fault path) or makes an access
Unicorn cannot place. Each exception becomes a FaultEvent with its story.
"""

from __future__ import annotations

import bisect
import os
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import GeneratorType

import unicorn

from .asm.assembler import SECTIONS, ArenaDecl, Assembler, Image, Source
from .bpf.arena import BPF_F_MMAPABLE, KERN_VM_SZ, Arena, ArenaError, arena_map_alloc, clear_lo32
from .bpf.core import BpfProg, BpfProgs, prog_tag
from .bpf.jit_extable import PT_REGS_NAMES, NotJitForm, arena_access
from .bpf.kfuncs import KFUNC_SLOT, KFUNCS, KfuncCall, NativeKfunc
from .bpf.stream import BPF_STDERR, BpfStreamStage
from .corpus import kernel_stub_defining
from .errors import AsmError, Diagnostic, EmuError
from .kernel.events import FIXUP, RESTART, SKIP, STOP, FaultEvent, Observation, observe_retry
from .kernel.kallsyms import Kallsyms, Symbol
from .mm.layout import (
    CALL_RETURN_ADDR,
    KERNEL_TEXT_START,
    KFUNC_PAGE,
    MACHINE_PAGE,
    MASK64,
    PAGE_MASK,
    PAGE_SIZE,
    THREAD_SIZE,
    VMALLOC_START,
    is_canonical,
    stack_top,
)
from .mm.physmem import FrameKind, PhysMem
from .policy import DEFAULT_POLICY, Policy
from .x86.cpu import ARG_REGS, CPU, MACHINE_PAGE_CODE
from .x86.decode import (
    Insn,
    MemRef,
    decode_operands,
    disasm_one,
    effective_address,
    memory_operand_addresses,
    read_modify_write_operands,
)
from .x86.dumpstack import OPCODE_BUFSIZE, PROLOGUE_SIZE, oops_report
from .x86.extable import ExceptionTable, ExtableEntry
from .x86.fault import Decision, OopsHandler, exc_page_fault, fixup_exception
from .x86.pgtable import PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_KERNEL_ROX, PageTables, PageWalk, pte_pfn, pte_present
from .x86.traps import (
    TRAP_NAMES,
    X86_PF_INSTR,
    X86_PF_PROT,
    X86_PF_RSVD,
    X86_PF_WRITE,
    X86_TRAP_GP,
    X86_TRAP_PF,
    X86_TRAP_UD,
    ErrorCode,
)
from .x86.unwind import show_trace, walk_stack_frames

DEFAULT_RAM = 64 << 20
DEFAULT_BUDGET = 10_000_000
DEFAULT_TIME_LIMIT = 60.0  # seconds, for calls with no instruction budget
_CLEARED_AT_CALL = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
                    "r15", "rbp")

SECTION_BASES = {"text": KERNEL_TEXT_START, "rodata": 0xFFFF_FFFF_8200_0000,
                 "data": 0xFFFF_FFFF_8280_0000, "bss": 0xFFFF_FFFF_8300_0000}
SECTION_PROT = {"text": PAGE_KERNEL_ROX, "rodata": PAGE_KERNEL_RO, "data": PAGE_KERNEL, "bss": PAGE_KERNEL}
VMALLOC_DATA_START = VMALLOC_START + 0x1000_0000  # Machine.vmalloc() hands out from here

RETURNED, OOPS, BUDGET, ERROR = "returned", "oops", "budget", "error"
STOPPED = "stopped"  # a started call that can go on: a step done, a breakpoint, a caught fault
TLB_SINGLE_PAGE_FLUSH_CEILING = 33

# The JIT's view of a linked image, derived once per image (the assembler caches images).
_JIT: weakref.WeakKeyDictionary[Image, tuple[list, list[ExtableEntry], list[Diagnostic]]] = (
    weakref.WeakKeyDictionary())


def _jit_extable(image: Image) -> tuple[list, list[ExtableEntry], list[Diagnostic]]:
    """Decode every instruction of the image's BPF functions with capstone; each arena access
    gets the EX_TYPE_BPF entry the x86 JIT writes, and a form it never emits is an error."""
    text = image.sections["text"]
    funcs, entries, diags = [], [], []
    addrs = sorted(image.lines)
    for f in sorted(image.bpf_funcs, key=lambda f: f.main is not None):
        code = bytes(text.data[f.start - text.start:f.end - text.start])
        for addr in addrs:
            if not f.start <= addr < f.end:
                continue
            decoded = decode_operands(code[addr - f.start:addr - f.start + 16], addr)
            file, line = image.lines[addr]
            try:
                access = arena_access(decoded) if decoded is not None else None
            except NotJitForm as e:
                diags.append(Diagnostic(file, line, f"BPF program '{f.name}': {e}"))
                continue
            if access is not None:
                entries.append(access.extable_entry(addr))
        funcs.append((f, prog_tag(code)))
    return funcs, entries, diags


def _no_kfence(_addr: int, _is_write: bool, _ip: int) -> tuple[bool, str]:
    """The KFENCE slot of page_fault_oops(): this machine has no KFENCE pool."""
    return False, "not a KFENCE address"


_COMMENT = re.compile(r"/\*.*?(\*/|$)|\s#.*$")

# Unicorn's error when a translation names memory beyond guest RAM, and the access it was.
_UNMAPPED = {unicorn.UC_ERR_READ_UNMAPPED: 0, unicorn.UC_ERR_WRITE_UNMAPPED: X86_PF_WRITE,
             unicorn.UC_ERR_FETCH_UNMAPPED: X86_PF_INSTR}


@dataclass
class CallResult:
    """How a call ended: `status` is returned, oops, budget or error."""

    entry: str
    status: str
    ret: int | None = None
    insns: int | None = 0  # None: the call ran without an instruction budget, uncounted
    faults: list[FaultEvent] = field(default_factory=list)
    oops: str | None = None
    error: str | None = None

    @property
    def ret_signed(self) -> int | None:
        return None if self.ret is None else self.ret - (1 << 64) if self.ret >> 63 else self.ret

    def to_json(self) -> dict:
        return {
            "entry": self.entry, "status": self.status, "ret": self.ret, "ret_signed": self.ret_signed,
            "insns": self.insns, "faults": [event_json(e) for e in self.faults],
            "oops": self.oops, "error": self.error,
        }

    def __repr__(self) -> str:
        if self.status == RETURNED:
            what = f"ret={self.ret:#x}"
        elif self.status == OOPS:
            what = (self.oops or "").split("\n", 1)[0]
        else:
            what = self.error or ""
        insns = "uncounted" if self.insns is None else self.insns
        return f"<CallResult {self.entry}: {self.status} {what}, {len(self.faults)} fault(s), {insns} insns>"


def event_json(e: FaultEvent) -> dict:
    def hx(v: int | None) -> str | None:
        return None if v is None else f"{v:#x}"
    return {
        "seq": e.seq, "cpu": e.cpu, "vector": e.vector, "kind": e.kind, "rip": hx(e.rip), "where": e.where,
        "insn": e.insn, "address": hx(e.address), "error_code": hx(e.error_code.value),
        "access": e.error_code.access, "error_code_text": e.error_code.describe(),
        "pte_before": hx(e.pte_before), "pte_after": hx(e.pte_after),
        "resolution": e.resolution, "handler": e.handler, "action": e.action, "resume_at": hx(e.resume_at),
        "retry": e.retry, "completed": e.completed, "cleared": e.cleared, "stream": e.stream, "steps": e.steps,
    }


@dataclass
class _CallState:
    cpu: CPU
    result: CallResult
    started_base: int = 0  # instructions started in earlier slices of this call
    pending: FaultEvent | None = None  # a restarted instruction not yet seen again
    after_stop: tuple[FaultEvent, Decision] | None = None  # a bad access decided in a memory hook
    kfunc_error: str | None = None  # a native kfunc refused to go on
    report: tuple[str | None, str] | None = None  # the stream report of the fault being handled, and its fate
    budget: int = 0
    used: int = 0  # of the budget
    stop: str | None = None  # why a debugger stop happened (a breakpoint, a caught fault, an interrupt)
    held: tuple[FaultEvent, Decision | None] | None = None  # a fault caught before its handler ran (or applied)
    kfunc: tuple | None = None  # a native kfunc stopped at a preemption point: (kfunc, body, slot)
    frames: list[int] | None = None  # the stack walk of the fault being handled, done once for it
    fault_regs: tuple[int, int] | None = None  # RIP and RBP when that fault was taken


class Machine:
    """One emulated machine. Cheap to build: every test can have its own."""

    def __init__(self, *, ram: int = DEFAULT_RAM, cpus: int = 1, budget: int = DEFAULT_BUDGET,
                 time_limit: float = DEFAULT_TIME_LIMIT,
                 comm: str = "arena-emu", policy: str | Policy = DEFAULT_POLICY, knobs: tuple[str, ...] = ()):
        if not 1 <= cpus <= 8:
            raise EmuError(f"a machine has 1 to 8 CPUs, not {cpus}")
        if budget < 0:
            raise EmuError(f"the instruction budget must be positive (or 0 for none), not {budget}")
        self.mem = PhysMem(ram)
        self.pgtables = PageTables(self.mem)
        self.kallsyms = Kallsyms()
        self.extable = ExceptionTable()
        self.policy = policy if isinstance(policy, Policy) else Policy.parse(policy, knobs)
        self.oops_handlers: list[OopsHandler] = [OopsHandler("kfence_handle_page_fault", "kfence", _no_kfence)]
        # A debugger's catchpoint: called before a fault's handler runs (decision None) and before an
        # oops is printed; True stops the call there, to go on with resume().
        self.catch: Callable[[FaultEvent, Decision | None], bool] | None = None
        if self.policy.scratch:
            self.oops_handlers.append(OopsHandler("bpf_arena_handle_page_fault", "scratch",
                                                  self.bpf_arena_handle_page_fault))
        self.link_symbols: dict[str, int] = {}
        self.lines: dict[int, tuple[str, int]] = {}
        self._line_starts: list[int] = []  # sorted(self.lines), for bisection
        self._frame_texts: dict[tuple[int, bool], str] = {}
        self.maps: dict[int, Arena] = {}  # map pointer -> arena
        self.arenas: dict[str, Arena] = {}
        self.arena: Arena | None = None  # the arena programs loaded from now on use
        self.progs = BpfProgs()
        self.pid = 1
        self._source_lines: dict[str, list[str]] = {}
        self._kfunc_at: dict[int, NativeKfunc] = {}
        self.events: list[FaultEvent] = []
        self.budget = budget  # 0: no instruction count (full speed); time_limit still stops a runaway
        self.time_limit = time_limit
        self.comm = comm
        self._cursor = dict(SECTION_BASES)
        self._vmalloc_cursor = VMALLOC_DATA_START
        self._assembler = Assembler()
        self._die_counter = 0
        self._call: _CallState | None = None  # the call of the CPU running (or last resumed)
        self._calls: dict[int, _CallState] = {}  # every started call, by CPU
        self.results: dict[int, CallResult] = {}  # the last call started on each CPU
        # A scheduler's preemption points: preempt(cpu, point) is asked at each named point of a
        # native kfunc ("free-before-flush", ...) and when a fault is taken ("fault"); True stops
        # the CPU there, to go on with resume().
        self.preempt: Callable[[int, str], bool] | None = None
        self._insn_cache: dict[int, Insn | None] = {}
        self._rmw_cache: dict[int, tuple[MemRef, ...]] = {}
        self._map_machine_page()
        self._map_kfunc_page()
        for i in range(cpus):
            self.map(stack_top(i) - THREAD_SIZE, THREAD_SIZE, PAGE_KERNEL, FrameKind.STACK)
        self.cpus = [CPU(i, self.mem, self.pgtables.root, self._on_exception)
                     for i in range(cpus)]
        for c in self.cpus:
            c.add_code_hook(KFUNC_PAGE, KFUNC_PAGE + PAGE_SIZE - 1, self._on_kfunc)
        self.pgtables.listeners.append(self._pte_changed)

    # -- memory ---------------------------------------------------------------

    def _map_machine_page(self) -> None:
        pfn = self.mem.alloc_frame(FrameKind.TEXT)
        self.mem.write(pfn << 12, MACHINE_PAGE_CODE)
        self.pgtables.map(MACHINE_PAGE, pfn, PAGE_KERNEL_ROX)
        self.kallsyms.add_section(MACHINE_PAGE, MACHINE_PAGE + PAGE_SIZE)
        self.kallsyms.add(Symbol("emu_call_return", CALL_RETURN_ADDR, "text", True, "<machine>"))
        self.kallsyms.add(Symbol("emu_invlpg", CALL_RETURN_ADDR + 0x10, "text", True, "<machine>"))

    def _clear_decode_caches(self) -> None:
        """Code may have changed (a load, a write, a PTE): decode again."""
        self._insn_cache.clear()
        self._rmw_cache.clear()

    def _map_kfunc_page(self) -> None:
        """One `ret` per native kfunc, 16 bytes apart, int3 between them."""
        code = bytearray(b"\xcc" * PAGE_SIZE)
        for i, k in enumerate(KFUNCS.values()):
            addr = KFUNC_PAGE + i * KFUNC_SLOT
            code[i * KFUNC_SLOT] = 0xC3
            self._kfunc_at[addr] = k
            self.kallsyms.add(Symbol(k.name, addr, "text", True, "<native>"))
        pfn = self.mem.alloc_frame(FrameKind.TEXT)
        self.mem.write(pfn << 12, bytes(code))
        self.pgtables.map(KFUNC_PAGE, pfn, PAGE_KERNEL_ROX)
        self.kallsyms.add_section(KFUNC_PAGE, KFUNC_PAGE + len(KFUNCS) * KFUNC_SLOT)

    def map(self, va: int, size: int = PAGE_SIZE, prot: int = PAGE_KERNEL,
            kind: FrameKind = FrameKind.DATA) -> list[int]:
        """Back [va, va+size) with fresh zeroed frames; returns their PFNs."""
        if va % PAGE_SIZE or size <= 0 or size % PAGE_SIZE:
            raise EmuError(f"map needs a page-aligned address and size, got {va:#x}+{size:#x}")
        pages = range(va, va + size, PAGE_SIZE)
        taken = next((p for p in pages if pte_present(self.pgtables.get_pte(p))), None)
        if taken is not None:
            raise EmuError(f"{taken:#x} is already mapped")
        pfns = []
        for page in pages:
            pfn = self.mem.alloc_frame(kind)
            self.pgtables.map(page, pfn, prot)
            pfns.append(pfn)
        return pfns

    def unmap(self, va: int, size: int = PAGE_SIZE) -> None:
        """Clear the PTEs and free the frames. No TLB flush: call flush_tlb() for that."""
        self._clear_decode_caches()
        for page in range(va, va + size, PAGE_SIZE):
            old = self.pgtables.unmap(page)
            if pte_present(old):
                self.mem.free_frame(pte_pfn(old))

    def vmalloc(self, size: int, prot: int = PAGE_KERNEL) -> int:
        """Mapped, zeroed kernel memory in the vmalloc area, with an unmapped page after it."""
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        va = self._vmalloc_cursor
        self.map(va, size, prot)
        self._vmalloc_cursor += size + PAGE_SIZE
        return va

    def get_vm_area(self, size: int) -> int:
        """get_vm_area(): reserve vmalloc address space, no PTEs, an unmapped page after it."""
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        va = self._vmalloc_cursor
        self._vmalloc_cursor += size + PAGE_SIZE
        return va

    def create_arena(self, max_entries: int, map_extra: int = 0, flags: int = BPF_F_MMAPABLE,
                     name: str = "arena") -> Arena:
        """A BPF arena map. For every file loaded after it, `name` links to the map pointer
        (the kfuncs' p__map), and ARENA_KERN_VM_START / ARENA_USER_VM_START to its addresses;
        the BPF programs loaded after it use it."""
        if name in self.arenas:
            raise EmuError(f"an arena named '{name}' already exists")
        arena = arena_map_alloc(self, self.get_vm_area(KERN_VM_SZ), max_entries, map_extra, flags,
                                policy=self.policy)
        arena.name, arena.map_ptr = name, self.vmalloc(PAGE_SIZE)  # struct bpf_arena: its fields live in Python
        self.maps[arena.map_ptr] = self.arenas[name] = self.arena = arena
        self.link_symbols.update({name: arena.map_ptr, "ARENA_KERN_VM_START": arena.kern_vm_start,
                                  "ARENA_USER_VM_START": arena.user_vm_start})
        return arena

    def _resolve_ksyms(self, ksyms: list[tuple[str, str, int]], loading: set[str]) -> None:
        """Load the kernel_stubs/ files that define the kernel functions BPF code names with
        BPF_KSYM, as libbpf resolves `__ksym` externs against the running kernel."""
        for name, file, line in ksyms:
            if name in self.kallsyms or name in self.link_symbols:
                continue
            path = kernel_stub_defining(name)
            if path is None:
                raise AsmError([Diagnostic(file, line, f"BPF_KSYM: the kernel has no function '{name}' "
                                                       "(neither native nor in kernel_stubs/)")])
            if os.path.relpath(path) not in loading and path not in loading:
                self.load(path)

    def _declare_arena(self, decl: ArenaDecl) -> None:
        """BPF_ARENA in a file: create the map, or check an existing one of that name matches."""
        params = {"max_entries": 0, "map_extra": 0, "map_flags": BPF_F_MMAPABLE} | decl.params
        have = self.arenas.get(decl.name)
        if have is not None:
            if (have.max_entries, have.flags) != (params["max_entries"], params["map_flags"]) or (
                    params["map_extra"] and params["map_extra"] != have.user_vm_start):
                raise AsmError([Diagnostic(decl.file, decl.line,
                                           f"arena '{decl.name}' already exists with other parameters")])
            return
        try:
            self.create_arena(params["max_entries"], params["map_extra"], params["map_flags"], decl.name)
        except ArenaError as e:
            raise AsmError([Diagnostic(decl.file, decl.line, f"BPF_ARENA: arena_map_alloc() failed: {e}")]) from None

    def close(self) -> None:
        """Free the CPUs' Unicorn engines now; the machine cannot run afterwards. Hooks tie a
        machine in reference cycles, so without this it lingers until the cycle collector runs."""
        for c in self.cpus:
            c.close()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def flush_tlb_kernel_range(self, start: int, end: int) -> None:
        """flush_tlb_kernel_range(): every CPU; page by page up to the kernel's
        tlb_single_page_flush_ceiling (33 pages), the whole TLB beyond it."""
        pages = (end - start + PAGE_SIZE - 1) // PAGE_SIZE
        for c in self.cpus:
            if pages > TLB_SINGLE_PAGE_FLUSH_CEILING:
                c.flush_tlb_all()
            else:
                for page in range(start, end, PAGE_SIZE):
                    c.flush_tlb_one(page)

    def _pte_changed(self, changes: list[tuple[int, int]]) -> None:
        for c in self.cpus:
            stale = c.maybe_stale
            for va, old in changes:
                stale.setdefault(va, old)

    def walk(self, va: int) -> PageWalk:
        return self.pgtables.walk(va & MASK64)

    def pte(self, va: int) -> int:
        return self.pgtables.get_pte(va)

    def set_pte(self, va: int, value: int) -> int:
        """Write a PTE as the kernel's set_pte() would: no TLB flush."""
        self._clear_decode_caches()
        return self.pgtables.set_pte(va, value)

    def _try_read(self, va: int, length: int) -> bytes | None:
        out = bytearray()
        while length > 0:
            pa = self.pgtables.translate(va & MASK64) if is_canonical(va & MASK64) else None
            if pa is None:
                return None
            n = min(length, PAGE_SIZE - (va % PAGE_SIZE))
            if not self.mem.contains(pa, n):
                return None
            out += self.mem.read(pa, n)
            va, length = va + n, length - n
        return bytes(out)

    def read(self, va: int, length: int) -> bytes:
        """Read through the page tables (not through a CPU's TLB)."""
        data = self._try_read(va, length)
        if data is None:
            raise EmuError(f"cannot access memory at address {va:#x}")
        return data

    def write(self, va: int, data: bytes) -> None:
        self._clear_decode_caches()
        pos = 0
        while pos < len(data):
            pa = self.pgtables.translate(va + pos) if is_canonical(va + pos) else None
            n = min(len(data) - pos, PAGE_SIZE - ((va + pos) % PAGE_SIZE))
            if pa is None or not self.mem.contains(pa, n):
                raise EmuError(f"cannot access memory at address {va + pos:#x}")
            self.mem.write(pa, data[pos:pos + n])
            pos += n

    def read_u64(self, va: int) -> int:
        return int.from_bytes(self.read(va, 8), "little")

    def read_cstring(self, va: int, limit: int) -> str | None:
        """A NUL-terminated string of at most `limit` bytes; None if unreadable."""
        out = bytearray()
        while len(out) < limit:
            chunk = self._try_read(va + len(out), min(limit - len(out), PAGE_SIZE - (va + len(out)) % PAGE_SIZE))
            if chunk is None:
                return None
            nul = chunk.find(0)
            if nul >= 0:
                return (out + chunk[:nul]).decode(errors="replace")
            out += chunk
        return out.decode(errors="replace")

    def write_u64(self, va: int, value: int) -> None:
        self.write(va, (value & MASK64).to_bytes(8, "little"))

    def read_u64_or_none(self, va: int) -> int | None:
        return self._read_u64_or_none(va)

    def _read_u64_or_none(self, va: int) -> int | None:
        va &= MASK64
        if va & (PAGE_SIZE - 1) <= PAGE_SIZE - 8:  # one page: the common case, and the stack walk's
            pa = self.pgtables.translate(va)
            return self.mem.read_u64(pa) if pa is not None and self.mem.contains(pa, 8) else None
        data = self._try_read(va, 8)
        return None if data is None else int.from_bytes(data, "little")

    def flush_tlb(self, cpu: int | None = None) -> None:
        """Flush the whole TLB of one CPU, or of every CPU."""
        for c in self.cpus if cpu is None else [self.cpus[cpu]]:
            c.flush_tlb_all()

    def invlpg(self, va: int, cpu: int = 0) -> None:
        self.cpus[cpu].flush_tlb_one(va)

    # -- loading --------------------------------------------------------------

    def load(self, *paths: str, syntax: str = "att") -> Image:
        """Assemble and link files as one unit against what is already loaded."""
        sources = []
        for path in paths:
            try:
                with open(path, encoding="utf-8") as f:
                    sources.append(Source(os.path.relpath(path) if not os.path.isabs(path) else path, f.read()))
            except (OSError, UnicodeDecodeError) as e:
                raise EmuError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        return self.load_sources(sources, syntax=syntax)

    def load_source(self, text: str, name: str = "<inline>", syntax: str = "att") -> Image:
        return self.load_sources([Source(name, text)], syntax=syntax)

    def load_sources(self, sources: list[Source], syntax: str = "att") -> Image:
        if syntax not in ("att", "intel"):
            raise EmuError(f"syntax is 'att' or 'intel', not '{syntax}'")
        decls = self._assembler.declarations(sources, syntax)
        self._resolve_ksyms(decls.ksyms, {s.name for s in sources})
        for decl in decls.arenas:
            self._declare_arena(decl)
        extern = dict(self.link_symbols)
        extern.update({name: s.address for name, s in self.kallsyms.global_symbols().items()})
        image = self._assembler.assemble(sources, self._cursor, extern, syntax)
        progs, jit_extable = self._bpf_load(image)
        for name in SECTIONS:
            sect = image.sections[name]
            if not sect.data:
                continue
            self._install(sect.start, bytes(sect.data), SECTION_PROT[name],
                          FrameKind.TEXT if name == "text" else FrameKind.DATA)
            self.kallsyms.add_section(sect.start, sect.start + len(sect.data))
            self._cursor[name] = sect.start + len(sect.data)
        display = {(p.name, p.start): p.ksym for p in progs}
        for name, addr, section, is_global, file in image.symbols:
            self.kallsyms.add(Symbol(name, addr, section, is_global, file, display.get((name, addr), "")))
        for entry in [*image.extable, *jit_extable]:
            self.extable.add(entry)
        for prog in progs:
            self.progs.add(prog)
        for source in sources:
            self._source_lines[source.name] = source.text.splitlines()
        self.lines.update(image.lines)
        self._line_starts = sorted(self.lines)
        self._frame_texts.clear()
        self._clear_decode_caches()
        for c in self.cpus:
            c.uc.ctl_flush_tb()
        return image

    def _bpf_load(self, image: Image) -> tuple[list[BpfProg], list[ExtableEntry]]:
        """What the verifier and the JIT add for a file's BPF functions: the programs, and an
        EX_TYPE_BPF entry for every arena access."""
        if image not in _JIT:
            _JIT[image] = _jit_extable(image)
        funcs, entries, diags = _JIT[image]
        if entries and self.arena is None:
            file, line = image.lines[entries[0].insn]
            name = next(f.name for f, _ in funcs if f.start <= entries[0].insn < f.end)
            diags = [*diags, Diagnostic(file, line, f"BPF program '{name}' accesses an arena, but there is none: "
                                                    "declare one with BPF_ARENA")]
        if diags:
            raise AsmError(diags)
        progs: dict[str, BpfProg] = {}
        for f, tag in funcs:
            progs[f.name] = BpfProg(f.name, f.start, f.end, tag, progs[f.main] if f.main else None, self.arena)
        return list(progs.values()), entries

    def _install(self, start: int, data: bytes, prot: int, kind: FrameKind) -> None:
        first, end = start & ~(PAGE_SIZE - 1), start + len(data)
        for page in range(first, end, PAGE_SIZE):
            if not pte_present(self.pgtables.get_pte(page)):
                self.pgtables.map(page, self.mem.alloc_frame(kind), prot)
        pos = 0
        while pos < len(data):
            va = start + pos
            n = min(len(data) - pos, PAGE_SIZE - va % PAGE_SIZE)
            self.mem.write(self.pgtables.translate(va), data[pos:pos + n])
            pos += n

    def symbol(self, name: str) -> int:
        if name in self.link_symbols:
            return self.link_symbols[name]
        return self.kallsyms.lookup_name(name)

    # -- KernelOps: what the fault path may look at ---------------------------

    def symbolize(self, addr: int) -> str:
        return self.kallsyms.format(addr)

    def is_text(self, addr: int) -> bool:
        """__kernel_text_address(): inside loaded code."""
        loc = self.kallsyms.lookup(addr)
        return loc is not None and loc.symbol.section == "text"

    def search_exception_tables(self, ip: int) -> ExtableEntry | None:
        return self.extable.search_exception_tables(ip)

    def stream_text(self, stream_id: int = BPF_STDERR) -> str:
        """What every main program's stream holds, not consumed."""
        return "".join(p.streams[stream_id].peek().decode(errors="replace") for p in self.progs if p.main is None)

    def pt_regs(self, offset: int) -> int:
        return self._call.cpu.reg(PT_REGS_NAMES[offset])

    def bpf_prog_report_arena_violation(self, is_write: bool, addr: int, fault_ip: int) -> None:
        """bpf_prog_report_arena_violation(): to the main program's stderr, with the user-space
        address of the faulting byte."""
        prog = self.progs.bpf_prog_ksym_find(fault_ip)
        if prog is None:
            return
        main = prog.main_prog
        user_vm_start = main.arena.user_vm_start if main.arena is not None else 0
        addr = (addr + clear_lo32(user_vm_start)) & MASK64
        self._call.report = self._bpf_stream_stage(
            main, BPF_STDERR, f"ERROR: Arena {'WRITE' if is_write else 'READ'} access at unmapped address {addr:#x}\n")

    def bpf_arena_handle_page_fault(self, addr: int, is_write: bool, fault_ip: int) -> tuple[bool, str]:
        """bpf_arena_handle_page_fault() as merged (dc11a4dba246): the BPF program on the kernel
        stack, its arena's recovery range, the scratch page over a none PTE, no TLB flush, a
        report with the page-aligned user address, and the instruction restarts."""
        prog = self.bpf_prog_find_from_stack()
        if prog is None:
            return False, "no BPF program on the stack"
        arena = prog.arena
        if arena is None:
            return False, f"{prog.name} has no arena"
        off = arena.handle_page_fault(addr)
        if off is None:
            return False, f"{addr:#x} is outside {arena.name}'s [kern_vm_start, +4 GiB + 32 KiB)"
        self._call.report = self._bpf_stream_stage(
            prog, BPF_STDERR, f"ERROR: Arena {'WRITE' if is_write else 'READ'} access at unmapped address "
                              f"{off + clear_lo32(arena.user_vm_start):#x}\n")
        return True, f"{prog.name} is on the stack; scratch page at {addr & PAGE_MASK:#x}, no TLB flush"

    def stack_frames(self, cpu: int) -> list[int]:
        """A CPU's RIP, then the return addresses of a frame-pointer walk of its kernel stack,
        as the kernel's unwinder finds them."""
        return self._frames(cpu, *self.cpus[cpu].reg_values(("rip", "rbp")))

    def _frames(self, cpu: int, rip: int, rbp: int) -> list[int]:
        hi = stack_top(cpu)
        return [rip] + [ret for _, ret in walk_stack_frames(self._stack_reader(), rbp, hi - THREAD_SIZE, hi)]

    def _stack_reader(self) -> Callable[[int], int | None]:
        """_read_u64_or_none for one stack walk, translating each page once: the walk reads
        a few words of one or two pages, and nothing changes the tables while it does."""
        pages: dict[int, int | None] = {}
        mem, translate = self.mem, self.pgtables.translate

        def read(va: int) -> int | None:
            page, off = va & ~(PAGE_SIZE - 1) & MASK64, va & (PAGE_SIZE - 1)
            if off > PAGE_SIZE - 8:
                return self._read_u64_or_none(va)
            pa = pages[page] if page in pages else pages.setdefault(page, translate(page))
            return mem.read_u64(pa + off) if pa is not None and mem.contains(pa + off, 8) else None
        return read

    def symbol_scope(self) -> dict[str, int]:
        """Every symbol and link-time constant, for evaluating expressions over them."""
        return {s.name: s.address for s in self.kallsyms.symbols()} | self.link_symbols

    def line_addresses(self, file: str, line: int) -> list[int]:
        """The instructions assembled from FILE:LINE (FILE may be a path's last part), lowest first."""
        return sorted(a for a, (f, n) in self.lines.items() if n == line and (f == file or f.endswith("/" + file)))

    def _fault_frames(self) -> list[int]:
        """stack_frames() of the faulting CPU, walked once per fault: finding the program
        and dumping the stack both need it, and nothing in between writes the stack."""
        state = self._call
        if state.frames is None:
            index = state.cpu.index
            state.frames = self._frames(index, *state.fault_regs) if state.fault_regs else self.stack_frames(index)
        return state.frames

    def bpf_prog_find_from_stack(self) -> BpfProg | None:
        """bpf_prog_find_from_stack(): the first BPF program, as its main program, in a
        frame-pointer walk of the faulting context's stack."""
        for ip in self._fault_frames():
            prog = self.progs.bpf_prog_ksym_find(ip)
            if prog is not None:
                return prog.main_prog
        return None

    def _bpf_stream_stage(self, prog: BpfProg, stream_id: int, message: str) -> tuple[str | None, str]:
        """bpf_stream_stage(): the message and a stack dump, committed whole, unless the
        program has used up its error reports or the stream its capacity."""
        if prog.bpf_prog_stream_error_limit():
            return None, f"not reported: {prog.name} reached its limit of error reports"
        ss = BpfStreamStage()
        ss.bpf_stream_printk(message)
        self._bpf_stream_dump_stack(ss)
        ret = prog.streams[stream_id].push_staged(ss.elems)
        if ret:
            return None, f"not reported: bpf_stream_stage_commit() = {ret} (the stream is full)"
        text = ss.text
        return text, f"reported to {prog.name}'s stderr ({len(text)} bytes)"

    def _bpf_stream_dump_stack(self, ss: BpfStreamStage) -> None:
        """bpf_stream_dump_stack(): the faulting frame, then a frame-pointer walk of the guest
        stack. (The kernel's own fault-path frames above it run in Python here, not shown.)"""
        c = self._call.cpu
        ss.bpf_stream_printk(f"CPU: {c.index} UID: 0 PID: {self.pid} Comm: {self.comm}\n")
        ss.bpf_stream_printk("Call trace:\n")
        for i, ip in enumerate(self._fault_frames()):
            ss.bpf_stream_printk(self._stream_frame(ip, i == 0))
        ss.bpf_stream_printk("\n")

    def _stream_frame(self, ip: int, faulting: bool) -> str:
        """One frame of a stream's call trace: its symbol, and for BPF code its source line
        (of the call, for a return address). Memoized until the next load: every report of
        a faulting loop prints the same frames."""
        key = (ip, faulting)
        text = self._frame_texts.get(key)
        if text is None:
            text = f"{self.symbolize(ip)}\n"
            if self.progs.bpf_prog_ksym_find(ip) is not None:
                text += self._bpf_line_info(ip if faulting else ip - 1)
            self._frame_texts[key] = text
        return text

    def _bpf_line_info(self, ip: int) -> str:
        """bpf_prog_get_file_line(): `  <source line> @ <file>:<line>` for a BPF frame."""
        i = bisect.bisect_right(self._line_starts, ip)
        if i == 0:
            return ""
        file, line = self.lines[self._line_starts[i - 1]]
        text = self._source_lines.get(file, [])
        src = " ".join(_COMMENT.sub(" ", text[line - 1]).split()) if 0 < line <= len(text) else ""
        return f"  {src} @ {os.path.basename(file)}:{line}\n"

    def stack_guard(self, address: int) -> tuple[int, int] | None:
        """get_stack_guard_info(): the current task's stack if `address` is in its guard page."""
        if self._call is None:
            return None
        hi = stack_top(self._call.cpu.index)
        lo = hi - THREAD_SIZE
        return (lo, hi) if lo - PAGE_SIZE <= address < lo else None

    # -- calls ----------------------------------------------------------------

    def call(self, entry: str | int, *args: int, cpu: int = 0, budget: int | None = None) -> CallResult:
        """Call a function with integer arguments and run it until it returns, oopses,
        or uses up its instruction budget. Never raises for what the guest does."""
        self.start_call(entry, *args, cpu=cpu, budget=budget)
        try:
            return self.resume(cpu=cpu)
        finally:
            self._calls.pop(cpu, None)
            self._call = None

    def start_call(self, entry: str | int, *args: int, cpu: int = 0, budget: int | None = None) -> CallResult:
        """Set a CPU up to call `entry`, stopped at its first instruction; resume() runs it."""
        if not 0 <= cpu < len(self.cpus):
            raise EmuError(f"no CPU {cpu}: this machine has {len(self.cpus)}")
        if cpu in self._calls:
            raise EmuError(f"CPU {cpu} is already running a call")
        if len(args) > len(ARG_REGS):
            raise EmuError(f"at most {len(ARG_REGS)} arguments are passed in registers, got {len(args)}")
        budget = self.budget if budget is None else budget
        if budget < 0:
            raise EmuError(f"the instruction budget must be positive (or 0 for none), not {budget}")
        addr = entry if isinstance(entry, int) else self.symbol(entry)
        name = entry if isinstance(entry, str) else self.symbolize(entry)
        c = self.cpus[cpu]
        rsp = stack_top(cpu) - 8
        self.mem.write_u64(self.pgtables.translate(rsp), CALL_RETURN_ADDR)  # a stack slot, not code
        c.set_regs(dict.fromkeys(_CLEARED_AT_CALL, 0) | dict(zip(ARG_REGS, args, strict=False))
                   | {"rsp": rsp, "rflags": 0x2, "rip": addr})
        self._call = self._calls[cpu] = _CallState(c, CallResult(name, STOPPED), budget=budget)
        self.results[cpu] = self._call.result
        return self._call.result

    def running_cpus(self) -> list[int]:
        """The CPUs with a started call that can go on."""
        return sorted(self._calls)

    def resume_until(self, addr: int, cpu: int, why: str = "") -> CallResult:
        """Resume `cpu` until its RIP reaches `addr` (or the call ends, or it stops for another reason)."""
        c = self.cpus[cpu]
        state = self._calls.get(cpu)
        if state is None or c.reg("rip") == addr:
            return self.results[cpu]

        def stop_here(uc, _address, _size, _data) -> None:
            state.stop = why or f"reached {addr:#x}"
            uc.emu_stop()

        hook = c.uc.hook_add(unicorn.UC_HOOK_CODE, stop_here, begin=addr, end=addr)
        c.uc.ctl_flush_tb()
        try:
            return self.resume(cpu=cpu)
        finally:
            c.uc.hook_del(hook)
            c.uc.ctl_flush_tb()

    @property
    def current(self) -> CallResult | None:
        """The started call, while it can go on."""
        return self._call.result if self._call is not None else None

    def resume(self, count: int | None = None, cpu: int | None = None) -> CallResult:
        """Run a started call on from its RIP (the last resumed CPU's, or `cpu`'s): to its end,
        for at most `count` instructions, or to a debugger stop or a preemption point. Its
        status stays STOPPED while it can go on."""
        state = self._call if cpu is None else self._calls.get(cpu)
        if state is None:
            raise EmuError("no call is running" if cpu is None else f"CPU {cpu} is not running a call")
        self._call = state
        state.stop = None
        if state.kfunc is not None:
            if self._drive_kfunc(state.cpu, state):
                return self._settle(state)
            if count is not None:
                count -= 1  # the kfunc was the step's instruction
                if count <= 0:
                    return self._settle(state)
        if state.held is not None:
            self._run_held(state)
            if count is not None or state.result.status != STOPPED:
                return self._settle(state)
            state.stop = None
        if not state.budget:  # no instruction budget: a wall-clock limit stops a runaway
            self._run(state, state.cpu.reg("rip"), count, stepping=count is not None)
            return self._settle(state)
        left = state.budget - state.used
        limit = left if count is None else min(count, left)
        self._run(state, state.cpu.reg("rip"), limit, stepping=limit < left)
        return self._settle(state)

    def interrupt(self) -> None:
        """Stop the running call at its next instruction (Ctrl-C)."""
        if self._call is not None:
            self._call.stop = "interrupted"
            self._call.cpu.uc.emu_stop()

    def _settle(self, state: _CallState) -> CallResult:
        result = state.result
        result.insns = state.started_base if state.budget else None
        if result.status != STOPPED:
            c = state.cpu
            if state.pending is not None:
                state.pending.retry = observe_retry(state.pending, Observation(
                    rip=c.reg("rip"), started=state.started_base, rcx=c.reg("rcx"), fault_address=None,
                    returned=result.status == RETURNED))
                state.pending = None
            self._calls.pop(c.index, None)
            self._call = None
        return result

    def _run_held(self, state: _CallState) -> None:
        """Run (or apply) the handler of a fault caught before it; a restarted instruction then
        runs once, so the step lands where the hardware would after it."""
        event, decision = state.held
        state.held = None
        c = state.cpu
        self._handle(c, event, decision)
        if state.result.status != OOPS and event.action == RESTART:
            self._run(state, c.reg("rip"), 1, stepping=True)

    def _run(self, state: _CallState, begin: int, limit: int | None, stepping: bool) -> None:
        """Run slices until the call returns, oopses or stops; `limit` None: no instruction
        count at all (Unicorn then runs at full speed, and the time limit stops a runaway)."""
        c, result = state.cpu, state.result
        remaining = limit
        while True:
            error = None
            try:
                c.run(begin, CALL_RETURN_ADDR, remaining or 0,
                      timeout_us=int(self.time_limit * 1e6) if remaining is None else 0)
            except unicorn.UcError as e:
                error = e
            started = c.exc.instructions_started
            used = started if remaining is None else min(started, remaining)
            state.used += used
            state.started_base += started
            rip = c.reg("rip")
            if result.status == OOPS:
                break
            if error is not None and error.errno in _UNMAPPED and state.after_stop is None:
                self._bad_access(c, _UNMAPPED[error.errno])
            if error is not None and state.after_stop is not None:
                # A bad physical access decided in the memory hook; apply it now.
                event, decision = state.after_stop
                state.after_stop = None
                if decision.action == FIXUP:
                    c.set_reg("rip", decision.resume_at)
                    begin = decision.resume_at
                    if remaining is None:
                        continue
                    remaining -= used
                    if remaining > 0:
                        continue
                    result.status = STOPPED if stepping else BUDGET
                    break
                self._stop_with_oops(c, event, decision)
                break
            if error is not None:
                result.status, result.error = ERROR, f"unicorn: {error} at {rip:#x} <{self.symbolize(rip)}>"
                break
            if state.kfunc_error is not None:
                result.status, result.error = ERROR, state.kfunc_error
                break
            if rip == CALL_RETURN_ADDR and (remaining is None or started <= remaining):
                result.status, result.ret = RETURNED, c.reg("rax")
                break
            state.started_base -= started - used
            if state.stop is not None or state.held is not None or stepping:
                result.status = STOPPED
                break
            result.status = BUDGET
            result.error = (f"instruction budget of {state.budget} exhausted" if state.budget else
                            f"no instruction budget, and the time limit of {self.time_limit:g} s ran out") + \
                f" at {rip:#x} <{self.symbolize(rip)}>"
            break

    # -- exceptions -----------------------------------------------------------

    def _insn_at(self, rip: int) -> Insn | None:
        """The instruction at `rip`, decoded once: code only changes through load() and write()."""
        if rip not in self._insn_cache:
            code = self._try_read(rip, 16)
            self._insn_cache[rip] = disasm_one(code, rip) if code else None
        return self._insn_cache[rip]

    def _rmw_at(self, rip: int) -> tuple[MemRef, ...]:
        """The read-modify-write memory operands of the instruction at `rip`, decoded once."""
        if rip not in self._rmw_cache:
            code = self._try_read(rip, 16)
            self._rmw_cache[rip] = read_modify_write_operands(code, rip) if code else ()
        return self._rmw_cache[rip]

    def _new_event(self, c: CPU, vector: int, error_code: int, address: int | None, rip: int,
                   rcx: int) -> FaultEvent:
        state = self._call
        started = state.started_base + c.exc.instructions_started
        if state.pending is not None:
            state.pending.retry = observe_retry(state.pending, Observation(rip, started, rcx, address))
            state.pending = None
        insn = self._insn_at(rip)
        event = FaultEvent(
            seq=len(self.events) + 1, cpu=c.index, vector=vector, rip=rip, where=self.symbolize(rip),
            address=address if address is not None else 0, error_code=ErrorCode(error_code), user_mode=False,
            walk_before=self.walk(address) if address is not None else None, started=started, rcx=rcx,
            string_op=bool(insn and insn.string_op), insn=insn.text if insn else "")
        self.events.append(event)
        state.result.faults.append(event)
        return event

    def _on_kfunc(self, c: CPU, addr: int) -> None:
        """UC_HOOK_CODE on the kfunc page: run a native kfunc; its `ret` then returns. A kfunc
        with preemption points is a generator: a scheduler may stop the CPU at one of them, and
        the rest of the body runs when the CPU is resumed."""
        k = self._kfunc_at.get(addr)
        state = self._call
        if k is None or state is None:
            return
        if c.kfunc_done_at == addr:  # resumed after a preempted body finished: just `ret`
            c.kfunc_done_at = None
            return
        args = [c.reg(r) for r in ARG_REGS[:k.nargs]]
        try:
            value = k.body(KfuncCall(self, c.index, self.read_u64(c.reg("rsp"))), *args)
        except EmuError as e:
            state.kfunc_error = f"{k.name}: {e}"
            c.uc.emu_stop()
            return
        if isinstance(value, GeneratorType):
            state.kfunc = (k, value, addr)
            if self._drive_kfunc(c, state):
                c.uc.emu_stop()
            return
        self._kfunc_return(c, k, value)

    def _kfunc_return(self, c: CPU, k: NativeKfunc, value: int | None) -> None:
        result = k.result(value)
        if result is not None:
            c.set_reg("rax", result)

    def _drive_kfunc(self, c: CPU, state: _CallState) -> bool:
        """Run a preemptible kfunc body on to its end or its next preemption point; True when
        a scheduler stopped it there."""
        k, body, addr = state.kfunc
        try:
            while True:
                point = next(body)
                if self.preempt is not None and self.preempt(c.index, point):
                    state.stop = f"preempted in {k.name} at {point}"
                    return True
        except StopIteration as done:
            state.kfunc = None
            self._kfunc_return(c, k, done.value)
            if c.running:
                return False
            c.kfunc_done_at = addr  # resumed from outside the hook: the hook must not run it again
            return False
        except EmuError as e:
            state.kfunc = None
            state.kfunc_error = f"{k.name}: {e}"
            state.result.status, state.result.error = ERROR, state.kfunc_error
            return True

    def _on_exception(self, c: CPU, vector: int) -> None:
        """UC_HOOK_INTR: the CPU took an exception; play exc_page_fault() or die(), unless a
        debugger catches it first."""
        error_code, rip, rcx, rbp, cr2 = c.exc.take_exception()
        self._call.report = self._call.frames = None
        self._call.fault_regs = (rip, rbp)
        rmw = False
        if vector == X86_TRAP_PF:
            rmw = not error_code & (X86_PF_WRITE | X86_PF_INSTR) and any(
                ea <= cr2 < ea + m.size for m in self._rmw_at(rip) for ea in [effective_address(m, c.reg)])
            if rmw:
                error_code |= X86_PF_WRITE
            event = self._new_event(c, vector, error_code, cr2, rip, rcx)
        else:
            event = self._new_event(c, vector, error_code, None, rip, rcx)
        if rmw:
            event.steps.append("a read-modify-write access: x86 reports it as a write "
                               "(Unicorn's core faulted on its read half)")
        if self.catch is not None and self.catch(event, None):
            self._hold(c, event, None)
            return
        if self.preempt is not None and self.preempt(c.index, "fault"):
            self._hold(c, event, None)
            self._call.stop = "preempted at fault"
            return
        decision = self._decide(c, event)
        if decision.action == STOP and self.catch is not None and self.catch(event, decision):
            self._hold(c, event, decision)
            return
        self._apply(c, event, decision)

    def _hold(self, c: CPU, event: FaultEvent, decision: Decision | None) -> None:
        self._call.held = (event, decision)
        self._call.stop = "caught"
        c.uc.emu_stop()

    def _decide(self, c: CPU, event: FaultEvent) -> Decision:
        if event.vector == X86_TRAP_PF:
            return exc_page_fault(self, event.address, event.error_code, event.rip, user_mode=False,
                                  walk=event.walk_before)
        return self._trap(c, event)

    def _handle(self, c: CPU, event: FaultEvent, decision: Decision | None) -> None:
        """A held fault's handler, run later: the registers may have been changed meanwhile."""
        self._call.report = self._call.frames = self._call.fault_regs = None
        self._apply(c, event, decision if decision is not None else self._decide(c, event))

    def _trap(self, c: CPU, event: FaultEvent) -> Decision:
        """A kernel-mode trap other than #PF: the extable first (do_trap()), then die()."""
        name = TRAP_NAMES.get(event.vector, f"vector {event.vector}")
        d = Decision(resolution="", action="", steps=[f"{name} (vector {event.vector}) in kernel mode"])
        if event.vector != X86_TRAP_UD and fixup_exception(self, event.rip, d):
            return d
        d.resolution, d.action, d.handler, d.oops_what = "oops", STOP, "die", name
        if event.vector == X86_TRAP_GP:
            code = self._try_read(event.rip, 16) or b""
            bad = [a for a in memory_operand_addresses(code, event.rip, c.reg) if not is_canonical(a)]
            if bad:
                event.address = bad[0]
                d.oops_what = f"{name}, probably for non-canonical address {bad[0]:#x}"
        if event.vector == X86_TRAP_UD and event.insn == "ud2" and event.rip in self.lines:
            file, line = self.lines[event.rip]
            d.oops_head = [f"kernel BUG at {file}:{line}!"]
        d.steps.append(f"die(\"{d.oops_what}\")")
        return d

    def _bad_access(self, c: CPU, access: int) -> None:
        """Unicorn stopped: a translation named memory beyond guest RAM.

        Guest RAM ends where our physical address space ends, so such a PTE has
        reserved bits set, as on hardware with a narrower MAXPHYADDR: a #PF with
        RSVD on the virtual address whose translation leads there. (Found after
        the stop rather than in a UC_HOOK_MEM_INVALID hook: any memory hook puts
        every access on Unicorn's slow path, five times slower.)
        """
        error_code = X86_PF_PROT | X86_PF_RSVD | access
        self._call.frames = self._call.fault_regs = None
        address, pa = self._virtual_address_of(c, access)
        event = self._new_event(c, X86_TRAP_PF, error_code, address, *c.reg_values(("rip", "rcx")))
        decision = exc_page_fault(self, address, event.error_code, event.rip, user_mode=False)
        decision.steps.insert(0, f"the translation names physical address {pa:#x}, beyond guest RAM "
                                 f"({self.mem.size:#x} bytes): reserved bits set")
        event.steps, event.resolution, event.handler, event.action = (
            decision.steps, decision.resolution, decision.handler, decision.action)
        event.resume_at = decision.resume_at
        event.walk_after = self.walk(address)
        self._call.after_stop = (event, decision)

    def _virtual_address_of(self, c: CPU, access: int) -> tuple[int, int]:
        """Which virtual address the instruction at RIP meant, when Unicorn says only that it
        reached no memory: the operand (or RIP, for a fetch) whose walk leads beyond guest RAM."""
        rip = c.reg("rip")
        if access == X86_PF_INSTR:
            return rip, self.walk(rip).pa or 0
        code = self._try_read(rip, 16) or b""
        rsp = c.reg("rsp")
        candidates = memory_operand_addresses(code, rip, c.reg) + [c.reg("rdi"), c.reg("rsi"), rsp - 8, rsp]
        for va in candidates:
            w = self.walk(va)
            if w.pa is not None and not self.mem.contains(w.pa):
                return va, w.pa
            if w.stopped and "outside guest RAM" in w.stopped:
                return va, 0
        return (candidates[0] if candidates else rip), 0

    def _apply(self, c: CPU, event: FaultEvent, d: Decision) -> None:
        event.steps, event.resolution, event.handler, event.action = (
            event.steps + d.steps, d.resolution, d.handler, d.action)
        if event.vector == X86_TRAP_PF:
            # Only a handler in page_fault_oops()'s chain changes the tables; a fixup does not.
            event.walk_after = event.walk_before if d.action in (FIXUP, SKIP) else self.walk(event.address)
        if self._call.report is not None:
            event.stream, fate = self._call.report
            event.steps.append(f"bpf_stream_stage: {fate}")
        if d.action == FIXUP:
            event.resume_at = d.resume_at
            c.set_reg("rip", d.resume_at)
        elif d.action == SKIP:
            event.resume_at, event.cleared = d.resume_at, d.cleared
            if d.cleared:
                c.set_reg(d.cleared, 0)
            c.set_reg("rip", d.resume_at)
        elif d.action == RESTART:
            self._call.pending = event
        elif d.action == STOP:
            self._stop_with_oops(c, event, d)
            c.uc.emu_stop()

    def _stop_with_oops(self, c: CPU, event: FaultEvent, d: Decision) -> None:
        regs = c.regs()
        lo = stack_top(c.index) - THREAD_SIZE
        trace = show_trace(self._read_u64_or_none, regs.rsp, regs.rbp, lo, lo + THREAD_SIZE, self.is_text)
        frames = [("" if e.reliable else "? ") + self.symbolize(e.address) for e in trace]
        self._die_counter += 1
        event.report = oops_report(
            head=d.oops_head, what=d.oops_what,
            err=d.oops_err if d.oops_err is not None else event.error_code.value if event.vector == 14 else 0,
            counter=self._die_counter, cpu=c.index, pid=1, comm=self.comm, regs=regs, where=event.where,
            code=self._try_read(regs.rip - PROLOGUE_SIZE, OPCODE_BUFSIZE), frames=frames, cr2=regs.cr2)
        event.steps.append(f"oops: {event.report.splitlines()[0]}")
        self._call.result.status = OOPS
        self._call.result.oops = event.report

