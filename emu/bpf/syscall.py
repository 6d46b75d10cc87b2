"""The BPF subsystem's state: the maps and programs loaded (kernel/bpf/syscall.c's map_create() and
bpf_prog_load()), and what it does when one of them faults (kernel/bpf/arena.c, stream.c).

It owns arenas, programs and their streams. The fault-time functions take the
faulting context (`FaultContext`), so they need neither the CPU nor the caller.
"""

from __future__ import annotations

import os
import random
import struct
import weakref
from dataclasses import dataclass, field

from ..asm.declarations import ArenaDecl, BpfFunc
from ..asm.image import Image
from ..errors import AsmError, Diagnostic, EmuError
from ..kernel.events import Step
from ..kernel.kallsyms import Kallsyms
from ..kernel.lines import LineTable
from ..mm.layout import MASK64, PAGE_MASK, PAGE_SIZE
from ..mm.memory import KernelMemory
from ..mm.vmalloc import VmallocArea
from ..policy import Policy
from ..x86.decode import decode_operands
from ..x86.extable import ExtableEntry
from ..x86.fault import FaultContext
from ..x86.tlb import Tlb
from .arena import BPF_ARENA_USER_VM_START, BPF_F_MMAPABLE, KERN_VM_SZ, Arena, ArenaError, arena_map_alloc, clear_lo32
from .arraymap import ArrayMap
from .bpf_map import Map
from .core import BpfProg, BpfProgs, prog_tag
from .hashtab import BPF_MAP_TYPE_HASH, HashMap
from .insn import BPF_HELPER_CALL, BPF_PSEUDO_KFUNC_CALL, decode
from .jit import JitImage, do_jit
from .jit_extable import NotJitForm, arena_access
from .maps import BPF_MAP_TYPE_ARENA, BPF_MAP_TYPE_ARRAY, MAP_TYPE_NAMES
from .stream import BPF_STDERR, BpfStreamStage, printk_bytes

JitView = tuple[list[tuple[BpfFunc, str]], list[ExtableEntry], list[Diagnostic]]

# The JIT's view of a linked image, derived once per image (the assembler caches images).
_JIT: weakref.WeakKeyDictionary[Image, JitView] = weakref.WeakKeyDictionary()


def jit_view(image: Image) -> JitView:
    """Every BPF function of the image with its tag, an EX_TYPE_BPF entry for each arena
    access, and a diagnostic for each form the x86 JIT never emits (capstone decodes every
    instruction of the image's BPF functions)."""
    if image not in _JIT:
        _JIT[image] = _decode_bpf_funcs(image)
    return _JIT[image]


def _decode_bpf_funcs(image: Image) -> JitView:
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


@dataclass(frozen=True)
class JitOptions:
    """What the verifier tells the JIT of a program: kfunc ids -> addresses, each function's stack
    depth, the `__arena` kfunc arguments to rebase, the functions' names (from BTF), and the bpf_loop() calls to
    inline (the callback's first instruction and the stack slots)."""

    kfuncs: dict[int, int] = field(default_factory=dict)
    stack_depth: int | tuple[int, ...] = 512
    arena_args: dict[int, tuple[tuple[int, bool], ...]] = field(default_factory=dict)
    func_names: tuple[str, ...] = ()
    loops: dict[int, tuple[int, int]] = field(default_factory=dict)


class _ArenaMM:
    """What an arena needs of mm: frames, tables, and the kernel's TLB flush."""

    def __init__(self, memory: KernelMemory, tlb: Tlb):
        self.mem, self.pgtables = memory.mem, memory.pgtables
        self.flush_tlb_kernel_range = tlb.flush_tlb_kernel_range


class BpfSubsystem:
    def __init__(self, memory: KernelMemory, vmalloc: VmallocArea, tlb: Tlb, kallsyms: Kallsyms,
                 lines: LineTable, policy: Policy, comm: str, pid: int = 1):
        self.memory, self.vmalloc, self.kallsyms, self.lines = memory, vmalloc, kallsyms, lines
        self._mm = _ArenaMM(memory, tlb)
        self.policy, self.comm, self.pid = policy, comm, pid
        self.maps: dict[int, Arena | Map] = {}  # map pointer -> map
        self.arenas: dict[str, Arena] = {}
        self.arena: Arena | None = None  # the arena programs loaded from now on use
        self.progs = BpfProgs()
        self._frame_texts: dict[tuple[int, bool], bytes] = {}
        self.ktime_ns = 1_000_000_000  # the helpers' deterministic clock
        self.prandom = random.Random(0)  # bpf_get_prandom_u32(), the same numbers every run
        self.trace_pipe: list[str] = []  # /sys/kernel/tracing/trace_pipe, bpf_trace_printk()'s lines

    # -- loading --------------------------------------------------------------

    def create_arena(self, max_entries: int, map_extra: int = 0, flags: int = BPF_F_MMAPABLE,
                     name: str = "arena") -> Arena:
        """map_create() of an arena: arena_map_alloc()'s checks, its struct in vmalloc memory
        (the fields live in Python), and it becomes the arena programs loaded next use. Map names
        need not be unique: an earlier arena of this name keeps its programs, and the name now
        means this one for what is loaded next (two objects each with a map named `arena`)."""
        arena = arena_map_alloc(self._mm, self.vmalloc.get_vm_area(KERN_VM_SZ), max_entries, map_extra, flags,
                                policy=self.policy)
        arena.name, arena.map_ptr = name, self.vmalloc.vmalloc(PAGE_SIZE)
        self.memory.write(arena.map_ptr + BPF_ARENA_USER_VM_START,
                          struct.pack("<QQ", arena.user_vm_start, arena.user_vm_end))
        self.maps[arena.map_ptr] = self.arenas[name] = self.arena = arena
        return arena

    def map_create(self, map_type: int, key_size: int, value_size: int, max_entries: int, map_flags: int = 0,
                   name: str = "") -> Map:
        """map_create() of an array or a hash map: the type's checks (MapError with the kernel's errno), its
        elements in vmalloc memory, and registered by map pointer, for the helpers and ld_imm64."""
        kinds: dict[int, type[ArrayMap] | type[HashMap]] = {BPF_MAP_TYPE_ARRAY: ArrayMap, BPF_MAP_TYPE_HASH: HashMap}
        if map_type == BPF_MAP_TYPE_ARENA:
            raise EmuError("an arena is made by create_arena()")
        if map_type not in kinds:
            kind = MAP_TYPE_NAMES[map_type] if 0 <= map_type < len(MAP_TYPE_NAMES) else str(map_type)
            raise EmuError(f"map type {kind} is not modelled: only array and hash maps are")
        bpf_map = kinds[map_type](self.vmalloc, key_size, value_size, max_entries, map_flags, name)
        self.maps[bpf_map.map_ptr] = bpf_map
        return bpf_map

    def bpf_map(self, map_ptr: int) -> Map | None:
        """The array or hash map a map pointer names; None for an arena or no map (the verifier would have
        refused a program passing either to a map helper)."""
        bpf_map = self.maps.get(map_ptr)
        return bpf_map if isinstance(bpf_map, Map) else None

    def declare_arena(self, decl: ArenaDecl) -> Arena | None:
        """BPF_ARENA in a file: create the map (returned), or check that the existing one of
        that name matches (None)."""
        params = {"max_entries": 0, "map_extra": 0, "map_flags": BPF_F_MMAPABLE} | decl.params
        have = self.arenas.get(decl.name)
        if have is not None:
            if (have.max_entries, have.flags) != (params["max_entries"], params["map_flags"]) or (
                    params["map_extra"] and params["map_extra"] != have.user_vm_start):
                raise AsmError([Diagnostic(decl.file, decl.line,
                                           f"arena '{decl.name}' already exists with other parameters")])
            return None
        try:
            return self.create_arena(params["max_entries"], params["map_extra"], params["map_flags"], decl.name)
        except ArenaError as e:
            raise AsmError([Diagnostic(decl.file, decl.line, f"BPF_ARENA: arena_map_alloc() failed: {e}")]) from None

    def bpf_prog_load(self, image: Image) -> tuple[list[BpfProg], list[ExtableEntry]]:
        """What the verifier and the JIT add for an image's BPF functions: the programs, and
        an EX_TYPE_BPF entry for every arena access. Nothing is registered yet."""
        funcs, entries, diags = jit_view(image)
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

    def bpf_prog_load_insns(self, code: bytes, name: str, address: int, helpers: dict[int, int],
                            jit: JitOptions | None = None) -> tuple[list[BpfProg], JitImage]:
        """bpf_prog_load() of bytecode as the verifier hands it on: decoded, JITed at `address`
        (helpers called by id at `helpers`' addresses, kfuncs by the ids `jit` gives) with the current
        arena in r12, and the program and its subprograms made; nothing is registered yet. The tag is
        the digest of the instructions, as bpf_prog_calc_tag() makes it."""
        if not name.isidentifier():
            raise EmuError(f"a program name is a C identifier, not {name!r}")
        jit = jit or JitOptions()
        arena = self.arena
        targets = {BPF_HELPER_CALL: helpers, BPF_PSEUDO_KFUNC_CALL: jit.kfuncs}
        insns = tuple(decode(code))
        image = do_jit(list(insns), address, kern_vm_start=arena.kern_vm_start if arena else None,
                       user_vm_start=arena.user_vm_start if arena else None,
                       resolve=lambda src, imm: targets.get(src, {}).get(imm), stack_depth=jit.stack_depth,
                       arena_args=jit.arena_args, loops=jit.loops)
        tag = prog_tag(code)
        ends = [*image.subprogs[1:], image.end]
        names = jit.func_names or [f"{name}__f{i}" for i in range(len(image.subprogs))]
        main = BpfProg(name, image.subprogs[0], ends[0], tag, None, arena, jited=image, insns=insns)
        subs = [BpfProg(names[i], start, end, tag, main, arena, jited=image, insns=insns)
                for i, (start, end) in enumerate(zip(image.subprogs[1:], ends[1:], strict=True), 1)]
        return [main, *subs], image

    def add_progs(self, progs: list[BpfProg]) -> None:
        for prog in progs:
            self.progs.add(prog)
        self._frame_texts.clear()


    def trace_printk(self, cpu: int, text: str) -> None:
        """A trace_pipe line as the kernel prints it: task-pid, [cpu], the function, the text."""
        self.trace_pipe.append(f"{self.comm}-{self.pid} [{cpu:03d}] bpf_trace_printk: {text.rstrip(chr(10))}")

    def stream_text(self, stream_id: int = BPF_STDERR) -> str:
        """What every main program's stream holds, not consumed."""
        return "".join(p.streams[stream_id].peek().decode(errors="replace") for p in self.progs if p.main is None)

    # -- faults ---------------------------------------------------------------

    def bpf_prog_report_arena_violation(self, ctx: FaultContext, is_write: bool, addr: int, fault_ip: int) -> None:
        """bpf_prog_report_arena_violation(): to the main program's stderr, with the user-space
        address of the faulting byte."""
        prog = self.progs.bpf_prog_ksym_find(fault_ip)
        if prog is None:
            return
        main = prog.main_prog
        user_vm_start = main.arena.user_vm_start if main.arena is not None else 0
        addr = (addr + clear_lo32(user_vm_start)) & MASK64
        ctx.report = self.bpf_stream_stage(
            ctx, main, BPF_STDERR,
            f"ERROR: Arena {'WRITE' if is_write else 'READ'} access at unmapped address {addr:#x}\n")

    def bpf_arena_handle_page_fault(self, ctx: FaultContext, addr: int, is_write: bool,
                                    fault_ip: int) -> tuple[bool, Step]:
        """bpf_arena_handle_page_fault() as merged (dc11a4dba246): the BPF program on the kernel
        stack, its arena's recovery range, the scratch page over a none PTE, no TLB flush, a
        report with the page-aligned user address, and the instruction restarts."""
        prog = self.bpf_prog_find_from_stack(ctx)
        if prog is None:
            return False, "no BPF program on the stack"
        arena = prog.arena
        if arena is None:
            return False, ("{} has no arena", prog.name)
        off = arena.handle_page_fault(addr)
        if off is None:
            return False, ("{:#x} is outside {}'s [kern_vm_start, +4 GiB + 32 KiB)", addr, arena.name)
        ctx.report = self.bpf_stream_stage(
            ctx, prog, BPF_STDERR, f"ERROR: Arena {'WRITE' if is_write else 'READ'} access at unmapped address "
                                   f"{off + clear_lo32(arena.user_vm_start):#x}\n")
        return True, ("{} is on the stack; scratch page at {:#x}, no TLB flush", prog.name, addr & PAGE_MASK)

    def bpf_prog_find_from_stack(self, ctx: FaultContext) -> BpfProg | None:
        """bpf_prog_find_from_stack(): the first BPF program, as its main program, in a
        frame-pointer walk of the faulting context's stack."""
        for ip in ctx.frames():
            prog = self.progs.bpf_prog_ksym_find(ip)
            if prog is not None:
                return prog.main_prog
        return None

    def bpf_stream_stage(self, ctx: FaultContext, prog: BpfProg, stream_id: int,
                         message: str) -> tuple[list[bytes] | None, Step]:
        """bpf_stream_stage(): the message and a stack dump, committed whole, unless the
        program has used up its error reports or the stream its capacity. Returns the elements
        committed (None when refused) and what became of them, for the fault's story."""
        if prog.bpf_prog_stream_error_limit():
            return None, ("not reported: {} reached its limit of error reports", prog.name)
        ss = BpfStreamStage()
        ss.bpf_stream_printk(message)
        self.bpf_stream_dump_stack(ctx, ss)
        ret = prog.streams[stream_id].push_staged(ss.elems)
        if ret:
            return None, ("not reported: bpf_stream_stage_commit() = {} (the stream is full)", ret)
        return ss.elems, (_reported, prog.name, ss)

    def bpf_stream_dump_stack(self, ctx: FaultContext, ss: BpfStreamStage) -> None:
        """bpf_stream_dump_stack(): the faulting frame, then a frame-pointer walk of the guest
        stack. (The kernel's own fault-path frames above it run in Python here, not shown.)"""
        ss.bpf_stream_printk(f"CPU: {ctx.cpu} UID: 0 PID: {self.pid} Comm: {self.comm}\n")
        ss.elems.append(b"Call trace:\n")
        for i, ip in enumerate(ctx.frames()):
            ss.elems.append(self._stream_frame(ip, i == 0))
        ss.elems.append(b"\n")

    def _stream_frame(self, ip: int, faulting: bool) -> bytes:
        """One frame of a stream's call trace, as bpf_stream_printk() stages it: its symbol, and
        for BPF code its source line (of the call, for a return address). Memoized until the
        next load: every report of a faulting loop prints the same frames."""
        key = (ip, faulting)
        elem = self._frame_texts.get(key)
        if elem is None:
            text = f"{self.kallsyms.format(ip)}\n"
            if self.progs.bpf_prog_ksym_find(ip) is not None:
                text += self.bpf_prog_get_file_line(ip if faulting else ip - 1)
            elem = self._frame_texts[key] = printk_bytes(text)
        return elem

    def bpf_prog_get_file_line(self, ip: int) -> str:
        """bpf_prog_get_file_line(): `  <source line> @ <file>:<line>` for a BPF frame."""
        where = self.lines.containing(ip)
        if where is None:
            return ""
        file, line = where
        return f"  {self.lines.source(file, line)} @ {os.path.basename(file)}:{line}\n"


def _reported(name: str, ss: BpfStreamStage) -> str:
    """The story's line for a committed report, made when read."""
    return f"reported to {name}'s stderr ({len(ss.text)} bytes)"
