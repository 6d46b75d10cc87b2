"""The verifier pass that changes what runs: bpf_check() of kernel/bpf/verifier.c, for a privileged loader.

What it does, in the kernel's order: check_subprogs() and check_cfg() (verifier_cfg.py), then do_check()'s typing of
every register and stack slot over the control-flow graph, to a fixed point, then the rewrites the JIT needs:
resolve_pseudo_ldimm64() and convert_pseudo_ld_imm64() (an ld_imm64 of a map or a ksym loads its address, src 0),
convert_ctx_accesses() (a load, store or atomic through PTR_TO_ARENA becomes BPF_PROBE_MEM32, BPF_PROBE_MEM32SX or
BPF_PROBE_ATOMIC; cast_kern, and any cast under BPF_F_NO_USER_CONV, becomes a 32-bit mov; an ALU64 op on an arena
pointer becomes its 32-bit op). Instruction count and indices never change, so line info and the JIT's insn ranges
still line up. What the JIT of this project emits itself is left alone: the div/mod fixups, may_goto, cast_user,
helper and kfunc call targets (resolved by id), and the rebasing of `__arena` kfunc arguments, which the kernel's
x86 JIT emits (`mov32 rX, rX; add rX, r12`, bpf-next 2026) and which Verified.arena_args lists per call, and
optimize_bpf_loop()'s inlining of bpf_loop(), whose callbacks and spill slots Verified.loops lists per call.

The loader is assumed to hold CAP_BPF and CAP_PERFMON, as an arena requires (allow_ptr_leaks: pointer comparisons,
pointer subtraction and pointer stores are allowed; back-edges are allowed, bounded loops need no proof here).

Where this is coarser than the kernel's:
- Not path-sensitive: one state per instruction, paths joined where they meet (verifier_types.py); the kernel
  walks every path separately, prunes by state equivalence, and reports the first failing path.
- No value tracking: scalars have no ranges, tnums or precision marks, so no bounds checks of map values, ctx
  fields, packets (no data_end comparison needed) or memory arguments, no null checks of map_value_or_null (a
  map_lookup_elem result is a map_value at once), no "div by zero" of a constant, no return-value range at exit.
- Stack: a variable-offset access counts the whole 512 bytes of depth and is not tracked; a pointer into a
  caller's frame is checked for bounds but writes through it are not tracked and reads through it are scalars.
- Calls: static subprograms are typed once for all call sites (their entry states joined, their R0 joined into
  every caller); so are global ones in objects (object_load.py passes no `global_funcs`: btf_prepare_func_args()
  is not modelled), so a global function the kernel verifies alone, say a pointer argument it null-checks, is
  typed here by what its callers pass (a NULL is a scalar, and a load through it is refused); helper and kfunc
  arguments are not checked against prototypes, except `__arena` kfunc arguments and `arg:arena` global-function
  arguments (ProgInfo.global_funcs); a kfunc returns a scalar (KF_ARENA_RET, like KF_ARENA_ARG1/2, is not
  tested by verifier.c: resolve_btfids turns it into BTF's address_space(1) for the program's compiler); a
  bpf_loop() is inlined when the straight-line code before it sets R4 to 0 and R2 to a callback, and refused
  otherwise (the helper, calling BPF code from the kernel, is not modelled). A call of a weak kfunc that was not
  found is refused wherever it is: without value tracking, a branch on bpf_ksym_exists() is not seen to be dead.
- Open-coded iterators: only the number iterator (bpf_iter_num_new/next/destroy). Its argument must be a fixed
  stack slot, whose 8 bytes count as written; bpf_iter_num_next() returns memory (its NULL is not tracked, nor that
  it is read-only). The
  iterator's slot states (STACK_ITER: created, active, destroyed), the check that each iterator is destroyed, and
  the iterator-driven convergence of loops are not modelled.
- Map pointers: only loads of an arena's struct bpf_arena user_vm_start and user_vm_end (arena_base()), at the
  shipped header's offsets; the kernel allows any field of the map's BTF struct (btf_struct_access()).
- ctx: not bounds-checked; for xdp and tc only loads of xdp_md's data, data_end and data_meta and __sk_buff's len,
  data, data_end and data_meta are converted (verifier_mem.py), and give packet pointers; other fields are refused
  by name. LD_ABS/LD_IND are left for the JIT to refuse.

Messages are the kernel's, verbatim, except where its full text for the case was not seen: an `__arena` kfunc
argument in a program without an arena, or of the wrong type (the phrases bpf-next's selftests expect, "arena
pointer requires a program with an associated arena", "R%d is not a pointer to arena or scalar."); a kfunc call
ProgInfo does not describe ("kernel btf_id %d is not a function", the kernel's for a BTF id that is no FUNC); a
map-pointer load this pass does not model (the kernel would allow it); an
empty program; a `global_funcs` key that starts no subprogram. The input is what libbpf
hands the kernel: relocated, ld_imm64 and calls carrying their pseudo kinds, the needed .text subprograms appended.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from ..errors import EmuError
from .btf_ext import LineInfo
from .insn import (
    BPF_ALU,
    BPF_ALU64,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_EXIT,
    BPF_FETCH,
    BPF_HELPER_CALL,
    BPF_JA,
    BPF_JCOND,
    BPF_JMP,
    BPF_LD,
    BPF_LD_IMM64,
    BPF_LDX,
    BPF_MEM,
    BPF_MEMSX,
    BPF_MOV,
    BPF_PROBE_ATOMIC,
    BPF_PROBE_MEM32,
    BPF_PROBE_MEM32SX,
    BPF_PSEUDO_BTF_ID,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_KFUNC_CALL,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
    BPF_REG_FP,
    BPF_ST,
    BPF_STX,
    BPF_TAIL_CALL,
    BPF_X,
    BpfInsnError,
    Insn,
    check,
)
from .maps import BPF_MAP_TYPE_ARENA
from .sec_defs import ProgType
from .verifier_alu import check_alu
from .verifier_cfg import call_target, check_reachable, check_subprogs, jump_target, successors
from .verifier_mem import MemCheck, is_cast
from .verifier_types import (
    ARENA,
    BPF_REG_SIZE,
    NOT_INIT,
    SCALAR,
    Kind,
    Reg,
    Reject,
    State,
    join,
    join_state,
    read_reg,
    write_check,
)

__all__ = ["ArenaArg", "ArenaInfo", "ArgKind", "BpfLoop", "KfuncInfo", "LdImm64", "LdKind", "ProgInfo", "Verified",
           "VerifierError", "bpf_check"]

BPF_FUNC_map_lookup_elem, BPF_FUNC_ringbuf_reserve, BPF_FUNC_loop, BPF_FUNC_map_lookup_percpu_elem = 1, 131, 181, 195
_HELPER_RET = {BPF_FUNC_map_lookup_elem: Reg(Kind.MAP_VALUE), BPF_FUNC_map_lookup_percpu_elem: Reg(Kind.MAP_VALUE),
               BPF_FUNC_ringbuf_reserve: Reg(Kind.MEM)}  # the pointer-returning helpers modelled; others: scalar
_ITER_NUM_KFUNCS, _ITER_NUM_SIZE = ("bpf_iter_num_new", "bpf_iter_num_next", "bpf_iter_num_destroy"), 8
_KFUNC_RET = {"bpf_iter_num_next": Reg(Kind.MEM)}  # the int in the iterator (null at the end: not tracked)
_CALLER_SAVED = range(1, 6)
_MAP_SRCS = (BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_MAP_IDX_VALUE)


class VerifierError(EmuError):
    """A program the verifier refuses: `prog NAME: insn N: message`, then `(FILE:LINE: source)` when known."""

    def __init__(self, prog: str, index: int, message: str, line: LineInfo | None = None):
        self.prog, self.index, self.message, self.line = prog, index, message, line
        where = f" ({line.file_name}:{line.line_num}: {line.line.strip()})" if line is not None else ""
        super().__init__(f"prog {prog}: insn {index}: {message}{where}")


@dataclass(frozen=True)
class ArenaInfo:
    """The program's arena map: its user_vm_start (what cast_user glues on) and whether BPF_F_NO_USER_CONV is set."""

    user_vm_start: int
    no_user_conv: bool = False


class LdKind(Enum):
    MAP_PTR = "map"  # BPF_PSEUDO_MAP_FD/IDX: the struct bpf_map *
    MAP_VALUE = "map value"  # BPF_PSEUDO_MAP_VALUE/IDX_VALUE: an internal map's value, or an arena global
    KSYM = "ksym"  # BPF_PSEUDO_BTF_ID: a kernel variable's address


@dataclass(frozen=True)
class LdImm64:
    """What one ld_imm64 of a map or ksym loads: the address resolve_pseudo_ldimm64() writes into it."""

    kind: LdKind
    value: int
    map_type: int | None = None

    def __repr__(self) -> str:
        mt = f" map_type={self.map_type}" if self.map_type is not None else ""
        return f"LdImm64({self.kind.value} {self.value:#x}{mt})"


@dataclass(frozen=True)
class KfuncInfo:
    """A kfunc call: its name and which arguments (1..5) are named `*__arena` or `*__arena__nullable`."""

    name: str
    arena_args: frozenset[int] = frozenset()
    nullable_args: frozenset[int] = frozenset()
    resolved: bool = True  # False: a __weak extern libbpf found nowhere (its call left with imm 0)


class ArgKind(Enum):
    """A global function's argument as btf_prepare_func_args() types it from BTF."""

    SCALAR = "scalar"
    CTX = "ctx"
    MEM = "mem"  # a pointer to a sized type
    ARENA = "arena"  # tagged arg:arena (__arg_arena)


_ARG_REG = {ArgKind.SCALAR: SCALAR, ArgKind.CTX: Reg(Kind.CTX), ArgKind.MEM: Reg(Kind.MEM), ArgKind.ARENA: ARENA}


@dataclass(frozen=True)
class ProgInfo:
    """What the loader knows about one program: see the module docstring. `ld_imm64` and `kfuncs` are keyed by
    instruction index, `global_funcs` by the start of each global subprogram (its arguments' kinds in order).
    `allow_uninit_stack` is CAP_PERFMON's bpf_allow_uninit_stack(): reading stack never written is a scalar."""

    name: str
    prog_type: ProgType | None = ProgType.SYSCALL
    arena: ArenaInfo | None = None
    ld_imm64: Mapping[int, LdImm64] = field(default_factory=dict)
    kfuncs: Mapping[int, KfuncInfo] = field(default_factory=dict)
    global_funcs: Mapping[int, tuple[ArgKind, ...]] = field(default_factory=dict)
    allow_uninit_stack: bool = False
    line_info: Callable[[int], LineInfo | None] | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        parts = [repr(self.name), self.prog_type.name if self.prog_type else "no prog type", f"arena={self.arena}"]
        counts = {"ld_imm64": self.ld_imm64, "kfunc calls": self.kfuncs, "global functions": self.global_funcs}
        return f"ProgInfo({', '.join(parts + [f'{len(m)} {what}' for what, m in counts.items()])})"


@dataclass(frozen=True)
class ArenaArg:
    """An `__arena` kfunc argument the JIT rebases to kern_vm_start + (u32)reg; nullable keeps a zero at zero."""

    regno: int
    nullable: bool = False


@dataclass(frozen=True)
class Verified:
    """The verified program, for do_jit(insns, stack_depth=stack_depths): same length and indices as the input."""

    insns: tuple[Insn, ...]
    subprog_starts: tuple[int, ...]
    stack_depths: tuple[int, ...]  # per subprogram, max stack offset used rounded up to 8
    probe_count: int  # prog->aux->num_exentries: the exception-table entries the arena accesses need
    arena_args: Mapping[int, tuple[ArenaArg, ...]] = field(default_factory=dict)  # by kfunc call index
    loops: Mapping[int, BpfLoop] = field(default_factory=dict)  # by bpf_loop call index: what the JIT inlines

    def __repr__(self) -> str:
        return (f"Verified({len(self.insns)} insns, subprogs at {self.subprog_starts}, stack {self.stack_depths},"
                f" {self.probe_count} probes, {len(self.arena_args)} calls with arena args, {len(self.loops)} loops)")


@dataclass(frozen=True)
class BpfLoop:
    """A bpf_loop() call optimize_bpf_loop() inlines: its callback's first instruction and the three stack slots
    (fp + stack_base, + 8, + 16) that keep R6..R8 while they serve as the loop's bound, counter and ctx; every
    call of a function shares them, below the depth check_max_stack_depth() checked."""

    callback: int
    stack_base: int


def bpf_check(insns: list[Insn], prog: ProgInfo) -> Verified:
    """Verify and rewrite `insns`, or raise VerifierError at the first instruction the kernel would refuse."""
    try:
        return _Verifier(insns, prog).run()
    except BpfInsnError as e:
        raise _error(prog, e.index, e.message) from None
    except Reject as e:
        raise _error(prog, e.index, e.message) from None


def _error(prog: ProgInfo, index: int, message: str) -> VerifierError:
    line = prog.line_info(index) if prog.line_info is not None else None
    return VerifierError(prog.name, index, message, line)


def _entry(regs: Mapping[int, Reg], frame: int) -> State:
    """init_func_state(): R10 is the frame's fp, the rest as given or NOT_INIT."""
    return State(tuple(regs.get(r, NOT_INIT) for r in range(BPF_REG_FP)) + (Reg(Kind.STACK, 0, frame),))


class _Verifier:
    """One bpf_check(): the worklist over instruction states, then the rewrites from the final states."""

    def __init__(self, insns: list[Insn], prog: ProgInfo):
        if not insns:
            raise Reject(0, "the program has no instructions")
        check(insns)
        self.insns, self.prog = insns, prog
        self.starts = check_subprogs(insns)
        check_reachable(insns)
        self.frame_of = [0] * len(insns)
        for k, lo in enumerate(self.starts):
            hi = self.starts[k + 1] if k + 1 < len(self.starts) else len(insns)
            self.frame_of[lo:hi] = [k] * (hi - lo)
        self.mem = MemCheck(prog.prog_type, prog.allow_uninit_stack, len(self.starts))
        self.states: dict[int, State] = {}
        self.todo: list[int] = []  # a heap, so that a loop's body settles before what follows it
        self.queued: set[int] = set()
        self.returns: dict[int, Reg] = {}  # static subprogram -> R0 joined over its exits
        self.callers: dict[int, set[int]] = {}
        self.zext: set[int] = set()
        self.arena_args: dict[int, tuple[ArenaArg, ...]] = {}
        self.loops: dict[int, int] = {}  # bpf_loop call -> its callback

    def run(self) -> Verified:
        self._check_ld_imm64()
        self._flow(0, _entry({1: Reg(Kind.CTX)}, 0))
        for start, kinds in self.prog.global_funcs.items():
            if start not in self.starts:
                raise Reject(start, f"insn {start} is not the start of a subprogram")
            self._flow(start, _entry({r: _ARG_REG[k] for r, k in enumerate(kinds, 1)}, self.starts.index(start)))
        self.loops = {i: self._loop_callback(i) for i, insn in enumerate(self.insns)
                      if insn.code == BPF_JMP | BPF_CALL and insn.src == BPF_HELPER_CALL and insn.imm == BPF_FUNC_loop}
        for i, insn in enumerate(self.insns):
            target = call_target(i, insn)
            if insn.code == BPF_LD_IMM64 and target is not None and target not in self.loops.values():
                self._flow(target, _entry({r: SCALAR for r in _CALLER_SAVED}, self.starts.index(target)))
        while self.todo:
            i = heapq.heappop(self.todo)
            self.queued.discard(i)
            for j, st in self._step(i, self.insns[i], self.states[i]):
                self._flow(j, st)
        return self._rewrite()

    def _flow(self, i: int, st: State) -> None:
        old = self.states.get(i)
        new = st if old is None else join_state(old, st)
        if new != old:
            self.states[i] = new
            self._queue(i)

    def _queue(self, i: int) -> None:
        if i not in self.queued:
            self.queued.add(i)
            heapq.heappush(self.todo, i)

    def _check_ld_imm64(self) -> None:
        """resolve_pseudo_ldimm64(): every map or ksym ld_imm64 has what it loads; an arena needs its user address."""
        for i, insn in enumerate(self.insns):
            if insn.code != BPF_LD_IMM64 or insn.src in (0, BPF_PSEUDO_FUNC):
                continue
            entry = self.prog.ld_imm64.get(i)
            if entry is None and insn.src == BPF_PSEUDO_BTF_ID:
                raise Reject(i, f"ldimm64 insn specifies invalid btf_id {insn.imm}")
            if entry is None:
                raise Reject(i, f"fd {insn.imm} is not pointing to valid bpf_map")
            if entry.map_type == BPF_MAP_TYPE_ARENA and self.prog.arena is not None and \
                    not self.prog.arena.user_vm_start:
                raise Reject(i, "arena's user address must be set via map_extra or mmap()")

    def _step(self, i: int, insn: Insn, st: State) -> list[tuple[int, State]]:
        cls = insn.cls
        if cls in (BPF_ALU, BPF_ALU64):
            st, zext = check_alu(i, insn, st, self.prog.arena is not None)
            (self.zext.add if zext else self.zext.discard)(i)
        elif insn.code == BPF_LD_IMM64:
            write_check(insn.dst, i)
            st = st.with_reg(insn.dst, self._ld_imm64_type(i, insn))
        elif cls == BPF_LD:
            read_reg(st, 6, i)
            st = self._clobber(st, SCALAR)
        elif cls in (BPF_LDX, BPF_ST, BPF_STX):
            st = self.mem.check(i, insn, st, self.frame_of[i])
        elif insn.code == BPF_JMP | BPF_TAIL_CALL:
            raise Reject(i, f"unknown opcode {insn.code:02x}")
        elif insn.cls == BPF_JMP and insn.op == BPF_CALL:
            return self._call(i, insn, st)
        elif insn.code == BPF_JMP | BPF_EXIT:
            self._exit(i, st)
            return []
        elif insn.op not in (BPF_JA, BPF_JCOND):  # a conditional jump reads its operands
            read_reg(st, insn.dst, i)
            if insn.source == BPF_X:
                read_reg(st, insn.src, i)
        return [(j, st) for j in successors(i, insn)]

    def _ld_imm64_type(self, i: int, insn: Insn) -> Reg:
        """check_ld_imm(): an arena global is an unknown scalar until the program casts it."""
        if insn.src == BPF_PSEUDO_FUNC:
            return Reg(Kind.FUNC)
        entry = self.prog.ld_imm64.get(i)
        if entry is None or insn.src == 0:
            return SCALAR
        if entry.kind == LdKind.MAP_PTR:
            return Reg(Kind.MAP_PTR, map_type=entry.map_type)
        if entry.kind == LdKind.KSYM:
            return Reg(Kind.MEM)
        return SCALAR if entry.map_type == BPF_MAP_TYPE_ARENA else Reg(Kind.MAP_VALUE)

    @staticmethod
    def _clobber(st: State, r0: Reg) -> State:
        for r in _CALLER_SAVED:
            st = st.with_reg(r, NOT_INIT)
        return st.with_reg(0, r0)

    def _call(self, i: int, insn: Insn, st: State) -> list[tuple[int, State]]:
        if insn.source == BPF_X:
            raise Reject(i, "BPF_CALL uses reserved fields")
        if insn.src == BPF_PSEUDO_CALL:
            return self._subprog_call(i, insn, st)
        if insn.src == BPF_PSEUDO_KFUNC_CALL:
            st = self._kfunc_args(i, insn, st)
            name = self.prog.kfuncs[i].name
            return [(i + 1, self._clobber(st, _KFUNC_RET.get(name, SCALAR)))]
        if i in self.loops:  # set_loop_callback_state(): R1 the counter, R2 the caller's ctx argument
            target = self.loops[i]
            self._flow(target, _entry({1: SCALAR, 2: read_reg(st, 3, i)}, self.starts.index(target)))
        r0 = _HELPER_RET.get(insn.imm, SCALAR) if insn.src == BPF_HELPER_CALL else SCALAR
        return [(i + 1, self._clobber(st, r0))]

    def _loop_callback(self, i: int) -> int:
        """update_loop_inline_state(): a bpf_loop() with flags a known 0 and one callback is inlined. Without value
        tracking, R4 and R2 are known only from the straight-line code before the call: `r4 = 0` and the callback's
        ld_imm64. The helper itself, which calls the callback from kernel code, is not modelled."""
        leaders = set(self.starts)
        for j, insn in enumerate(self.insns):
            target = jump_target(j, insn)
            if target is not None:
                leaders |= {target, j + 1}
        k = max(j for j in leaders if j <= i)
        known: dict[int, int | None] = {}
        while k < i:
            insn = self.insns[k]
            if insn.code == BPF_LD_IMM64:
                known[insn.dst] = 1 + k + insn.imm if insn.src == BPF_PSEUDO_FUNC else None
                k += 2
                continue
            if insn.cls == BPF_JMP and insn.op == BPF_CALL:
                known.update(dict.fromkeys(range(6)))
            elif insn.cls == BPF_STX and insn.mode == BPF_ATOMIC and insn.imm & BPF_FETCH:
                known[0 if insn.imm == BPF_CMPXCHG else insn.src] = None
            elif insn.cls in (BPF_ALU, BPF_ALU64, BPF_LDX):
                known[insn.dst] = 0 if insn.code in (BPF_ALU | BPF_MOV, BPF_ALU64 | BPF_MOV) and insn.imm == 0 \
                    else None
            k += 1
        callback = known.get(2)
        if known.get(4) != 0 or callback is None:
            raise Reject(i, "bpf_loop: only the inlined form is modelled (flags a constant 0 and a constant callback "
                            "set in the straight-line code before the call)")
        return callback

    def _kfunc_args(self, i: int, insn: Insn, st: State) -> State:
        """check_kfunc_args() for `__arena` arguments (a PTR_TO_ARENA or any scalar, in a program with an arena) and
        for the number iterator's (process_iter_arg(): a fixed slot of the stack, which the kfunc then writes)."""
        info = self.prog.kfuncs.get(i)
        if info is None:
            raise Reject(i, f"kernel btf_id {insn.imm} is not a function")
        if not info.resolved:  # fixup_kfunc_call()'s check, for a call its dead-code pass did not remove
            raise Reject(i, "invalid kernel function call not eliminated in verifier pass")
        if info.name in _ITER_NUM_KFUNCS:
            it = read_reg(st, 1, i)
            if it.kind != Kind.STACK or it.off is None:
                raise Reject(i, "arg#0 expected pointer to an iterator on stack")
            st = self.mem.write_stack(i, st, self.frame_of[i], 1, it, _ITER_NUM_SIZE)
        args = []
        for regno in sorted(info.arena_args | info.nullable_args):
            r = read_reg(st, regno, i)
            if self.prog.arena is None:
                raise Reject(i, "arena pointer requires a program with an associated arena")
            if r.kind not in (Kind.ARENA, Kind.SCALAR):
                raise Reject(i, f"R{regno} is not a pointer to arena or scalar.")
            args.append(ArenaArg(regno, regno in info.nullable_args))
        if args:
            self.arena_args[i] = tuple(args)
        return st

    def _subprog_call(self, i: int, insn: Insn, st: State) -> list[tuple[int, State]]:
        """check_func_call(): a global callee was typed from its prototype, a static one from its callers."""
        target = i + 1 + insn.imm
        frame = self.starts.index(target)
        kinds = self.prog.global_funcs.get(target)
        if kinds is not None:
            for regno, kind in enumerate(kinds, 1):
                r = read_reg(st, regno, i)
                if kind == ArgKind.ARENA and r.kind not in (Kind.ARENA, Kind.SCALAR):
                    raise Reject(i, f"R{regno} is not a pointer to arena or scalar.")
            return [(i + 1, self._clobber(st, SCALAR))]
        self.callers.setdefault(frame, set()).add(i)
        self._flow(target, _entry({r: st.reg(r) for r in _CALLER_SAVED}, frame))
        r0 = self.returns.get(frame)
        return [] if r0 is None else [(i + 1, self._clobber(st, r0))]

    def _exit(self, i: int, st: State) -> None:
        """check_return_code() for the main program and global functions; a static callee hands R0 to its callers."""
        frame = self.frame_of[i]
        if frame == 0 or self.starts[frame] in self.prog.global_funcs:
            read_reg(st, 0, i)
            return
        old = self.returns.get(frame)
        new = st.reg(0) if old is None else join(old, st.reg(0))
        if new != old:
            self.returns[frame] = new
            for call in self.callers.get(frame, ()):
                self._queue(call)

    def _rewrite(self) -> Verified:
        """convert_ctx_accesses() and convert_pseudo_ld_imm64(), from the final states."""
        out = list(self.insns)
        probes = 0
        for i, insn in enumerate(self.insns):
            if i in self.mem.arena_access:
                out[i] = _probe_form(insn)
                probes += 1
            elif i in self.mem.ctx_access:  # convert_ctx_accesses(): a UAPI field becomes the kernel's
                off, size = self.mem.ctx_access[i]
                out[i] = Insn(BPF_LDX | BPF_MEM | size, insn.dst, insn.src, off)
            elif is_cast(insn) and self.prog.arena is not None and (insn.imm == 1 or self.prog.arena.no_user_conv):
                out[i] = Insn(BPF_ALU | BPF_MOV | BPF_X, insn.dst, insn.src)
            elif i in self.zext:
                out[i] = replace(insn, code=BPF_ALU | insn.op | insn.source)
            elif insn.code == BPF_LD_IMM64 and insn.src in (*_MAP_SRCS, BPF_PSEUDO_BTF_ID):
                value = self.prog.ld_imm64[i].value
                out[i] = replace(insn, src=0, imm=_s32(value))
                out[i + 1] = replace(out[i + 1], imm=_s32(value >> 32))
        depths = [-(-d // BPF_REG_SIZE) * BPF_REG_SIZE for d in self.mem.depth]
        for frame in {self.frame_of[i] for i in self.loops}:  # optimize_bpf_loop(): 3 slots a frame, past the 512
            depths[frame] += 3 * BPF_REG_SIZE
        loops = {i: BpfLoop(callback, -depths[self.frame_of[i]]) for i, callback in self.loops.items()}
        return Verified(tuple(out), self.starts, tuple(depths), probes, dict(self.arena_args), loops)


def _probe_form(insn: Insn) -> Insn:
    if insn.cls == BPF_STX and insn.mode == BPF_ATOMIC:
        mode = BPF_PROBE_ATOMIC
    else:
        mode = BPF_PROBE_MEM32SX if insn.mode == BPF_MEMSX else BPF_PROBE_MEM32
    return replace(insn, code=insn.cls | mode | insn.size)


def _s32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >> 31 else value
