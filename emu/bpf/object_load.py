"""libbpf's bpf_object__load(): a clang-built BPF object made runnable, and its programs run as
BPF_PROG_TEST_RUN runs them.

bpf_object__create_maps(): each map of the object created (arenas, arrays, hash maps, and the internal
.data/.rodata/.bss maps holding their sections' bytes), the arena's globals copied into its last pages
(libbpf's arena_data_off, for a kernel that takes a full-range ld_imm64 offset). Then each entry program:
bpf_object__relocate(), the verifier's rewrites (bpf_check()), the JIT, and its line info, so a fault's
story names the C line. kfuncs resolve against the native kfuncs and the kernel code loaded before.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass

from ..errors import EmuError
from ..mm.layout import PAGE_SIZE
from .arena import Arena
from .bpf_map import EPERM, Map, MapError
from .btf_ext import BPF_INSN_SZ
from .insn import decode
from .maps import BPF_MAP_TYPE_ARENA, BpfMap, MapKind
from .object_file import BpfObject, BpfProgram, ExternKind
from .relocate import LinkedProg, MapRef, RelocError, bpf_object__relocate
from .sec_defs import ProgType, has_test_run
from .syscall import BpfSubsystem, JitOptions
from .verifier import ArenaInfo, KfuncInfo, LdImm64, LdKind, ProgInfo, bpf_check

BPF_F_NO_USER_CONV = 1 << 18
KFUNC_ID_BASE = 0x10000  # the ids this loader gives kfuncs, standing in for their vmlinux BTF ids
# The parameter names vmlinux BTF would give the kernel functions of kernel_stubs/ that take arena pointers
KERNEL_KFUNC_PARAMS: dict[str, tuple[str, ...]] = {
    "bpf_kfunc_arena_read_u64": ("p__arena",),
    "bpf_kfunc_arena_write_u64": ("p__arena", "val"),
    "bpf_kfunc_arena_read_far": ("p__arena",),
    "bpf_kfunc_arena_read_below": ("p__arena",),
    "bpf_kfunc_arena_copy": ("dst__arena", "src__arena", "len"),
    "bpf_kfunc_arena_touch_pages": ("p__arena", "n"),
    "bpf_kfunc_arena_list_sum": ("head__arena", "p__map"),
    "bpf_kfunc_c_arena_read_u64": ("p__arena",),
    "bpf_kfunc_c_arena_write_u64": ("p__arena", "val"),
    "bpf_kfunc_c_arena_copy": ("dst__arena", "src__arena", "len"),
    "bpf_kfunc_c_arena_list_sum": ("head__arena", "p__map"),
}


class LoadError(EmuError):
    """An object libbpf or the kernel would refuse at load: one line naming what."""


class _Variables:
    """Variables by name (offset, size) in some bytes: read and written as little-endian integers."""

    variables: dict[str, tuple[int, int]]
    kind = "global"

    def __getitem__(self, name: str) -> int:
        off, size = self._var(name)
        return int.from_bytes(self._read(off, size), "little")

    def __setitem__(self, name: str, value: int) -> None:
        off, size = self._var(name)
        self._write(name, off, (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"))

    def _var(self, name: str) -> tuple[int, int]:
        if name not in self.variables:
            raise EmuError(f"no {self.kind} '{name}'{self._where()}: there are {', '.join(self.variables) or 'none'}")
        return self.variables[name]

    def _where(self) -> str:
        return ""

    def _read(self, off: int, size: int) -> bytes:
        raise NotImplementedError

    def _write(self, name: str, off: int, data: bytes) -> None:
        raise NotImplementedError


@dataclass
class Globals(_Variables):
    """An internal map's variables by name, as a skeleton's `skel->bss->counter` reads and writes them."""

    bpf_map: Map
    variables: dict[str, tuple[int, int]]  # name -> (offset, size)
    frozen: bool = False  # .rodata: bpf_object__populate_internal_map() froze it, so user space cannot write it

    def _where(self) -> str:
        return f" in {self.bpf_map.name}"

    def _read(self, off: int, size: int) -> bytes:
        return self.bpf_map.lookup_elem(0)[off:off + size]

    def _write(self, name: str, off: int, data: bytes) -> None:
        if self.frozen:
            raise MapError(EPERM, f"{self.bpf_map.name} is frozen (bpf_map_freeze() at load): '{name}' is read-only")
        value = bytearray(self.bpf_map.lookup_elem(0))
        value[off:off + len(data)] = data
        self.bpf_map.update_elem(0, bytes(value))

    def __repr__(self) -> str:
        return f"<Globals of {self.bpf_map.name}: {', '.join(self.variables)}>"


@dataclass
class ArenaGlobals(_Variables):
    """The object's `__arena` globals by name, read and written through user space's mapping of the arena, as a
    skeleton's `skel->arena->counter` does: `address(name)` is the user address the program's pointer holds."""

    arena: Arena
    base: int  # the user address of .addr_space.1's first byte
    variables: dict[str, tuple[int, int]]  # name -> (offset, size)
    kind = "__arena global"

    def address(self, name: str) -> int:
        return self.base + self._var(name)[0]

    def _read(self, off: int, size: int) -> bytes:
        return self.arena.user_read(self.base + off, size)

    def _write(self, name: str, off: int, data: bytes) -> None:
        self.arena.user_write(self.base + off, data)

    def __repr__(self) -> str:
        return f"<ArenaGlobals at {self.base:#x}: {', '.join(self.variables)}>"


@dataclass
class LoadedProgram:
    name: str
    sec_name: str
    prog_type: ProgType | None
    entry: int  # where the JIT put it: the address a test run calls
    linked: LinkedProg


class LoadedObject:
    """What `machine.load_bpf()` gives back: the object's programs, maps and globals, and `run()`."""

    def __init__(self, obj: BpfObject, maps: dict[str, Arena | Map], programs: dict[str, LoadedProgram],
                 runner: Callable[[LoadedProgram, bytes, bytes], tuple[object, bytes]]):
        self.obj, self.maps, self.programs, self._runner = obj, maps, programs, runner
        self.ctx_out = b""  # the last run's ctx as the program left it (BPF_PROG_TEST_RUN's ctx_out)
        self.data_out = b""  # the last run's packet as the program left it (data_out)
        self.globals = {m.kind: Globals(internal, {v.name: (v.offset, v.size) for v in m.variables},
                                        m.kind == MapKind.RODATA)
                        for m in obj.maps if m.kind in (MapKind.BSS, MapKind.DATA, MapKind.RODATA)
                        and isinstance(internal := maps[m.name], Map)}

    @property
    def arena_globals(self) -> ArenaGlobals:
        """The `__arena` globals (.addr_space.1), in the object's arena."""
        arena = next((m for m in self.maps.values() if isinstance(m, Arena)), None)
        if arena is None or not self.obj.arena_globals:
            raise EmuError(f"{self.obj.name} has no __arena globals")
        return ArenaGlobals(arena, arena.user_vm_start + arena_data_off(self.obj, arena),
                            {v.name: (v.offset, v.size) for v in self.obj.arena_globals})

    @property
    def bss(self) -> Globals:
        return self._globals(MapKind.BSS)

    @property
    def data(self) -> Globals:
        return self._globals(MapKind.DATA)

    @property
    def rodata(self) -> Globals:
        return self._globals(MapKind.RODATA)

    def _globals(self, kind: MapKind) -> Globals:
        if kind not in self.globals:
            raise EmuError(f"{self.obj.name} has no {kind.value} section")
        return self.globals[kind]

    def run(self, prog: str | None = None, ctx: bytes = b"", data: bytes = b""):
        """BPF_PROG_TEST_RUN of one program (the only one when `prog` is None); a CallResult."""
        if not self.programs:
            raise EmuError(f"{self.obj.name} has no programs")
        if prog is None:
            if len(self.programs) != 1:
                raise EmuError(f"{self.obj.name} has {len(self.programs)} programs: name one of "
                               f"{', '.join(self.programs)}")
            prog = next(iter(self.programs))
        if prog not in self.programs:
            raise EmuError(f"no program '{prog}' in {self.obj.name}: there are {', '.join(self.programs)}")
        result, out = self._runner(self.programs[prog], ctx, data)
        if self.programs[prog].prog_type in PACKET_PROGS:
            self.data_out = out
        else:
            self.ctx_out = out
        return result

    def __repr__(self) -> str:
        return f"<LoadedObject {self.obj.name}: programs {', '.join(self.programs)}; maps {', '.join(self.maps)}>"


def create_maps(obj: BpfObject, create_arena: Callable[[BpfMap], Arena],
                map_create: Callable[[BpfMap], Map]) -> dict[str, Arena | Map]:
    """bpf_object__create_maps(): every map, with its initial bytes; the arena's globals copied in."""
    out: dict[str, Arena | Map] = {}
    for m in obj.maps:
        if m.type == BPF_MAP_TYPE_ARENA:
            out[m.name] = create_arena(m)
            continue
        created = out[m.name] = map_create(m)
        if m.kind in (MapKind.DATA, MapKind.RODATA, MapKind.BSS):
            created.update_elem(0, (m.data or b"").ljust(m.value_size, b"\0"))
    if obj.arena_data:
        arena = next((a for a in out.values() if isinstance(a, Arena)), None)
        if arena is None:
            raise LoadError("to use global __arena variables the ARENA map should be explicitly declared in "
                            "SEC(\".maps\")")
        arena.user_write(arena.user_vm_start + arena_data_off(obj, arena), obj.arena_data)
    return out


def arena_data_off(obj: BpfObject, arena: Arena) -> int:
    """Where libbpf puts the arena's globals: its last pages (FEAT_LDIMM64_FULL_RANGE_OFF)."""
    size = -(-len(obj.arena_data) // PAGE_SIZE) * PAGE_SIZE
    if size > arena.max_entries * PAGE_SIZE:
        raise LoadError(f"declared ARENA map size ({arena.max_entries * PAGE_SIZE}) is too small to hold global "
                        f"__arena variables of size {len(obj.arena_data)}")
    return arena.max_entries * PAGE_SIZE - size


def map_refs(obj: BpfObject, maps: dict[str, Arena | Map]) -> Callable[[str], MapRef]:
    """What relocation needs of a created map: its pointer and its value's address."""
    def ref(name: str) -> MapRef:
        if name not in maps:
            raise RelocError(f"map '{name}' is not in {obj.name}")
        m = maps[name]
        if isinstance(m, Arena):
            return MapRef(m.map_ptr, m.user_vm_start + (arena_data_off(obj, m) if obj.arena_data else 0),
                          BPF_MAP_TYPE_ARENA)
        value = m.map_direct_value_addr() if hasattr(m, "map_direct_value_addr") and m.max_entries == 1 else 0
        return MapRef(m.map_ptr, value, m.map_type)
    return ref


def prog_info(obj: BpfObject, prog: BpfProgram, linked: LinkedProg, arena: Arena | None,
              resolved: Collection[int] = ()) -> ProgInfo:
    """What the verifier is told about one linked program; `resolved` are the kfunc ids that have an address."""
    insns = decode(linked.insns)
    ld = {}
    for i, what in linked.ldimm.items():
        value = (insns[i].imm & 0xFFFF_FFFF) | (insns[i + 1].imm & 0xFFFF_FFFF) << 32
        if what.kind in ("map", "map_value", "ksym"):
            kind = {"map": LdKind.MAP_PTR, "map_value": LdKind.MAP_VALUE, "ksym": LdKind.KSYM}[what.kind]
            ld[i] = LdImm64(kind, value, what.map_type if what.kind != "ksym" else None)
    kfuncs = {i: KfuncInfo(linked.kfuncs[insn.imm], *_arena_args(linked.kfuncs[insn.imm]), insn.imm in resolved)
              for i, insn in enumerate(insns) if insn.code == 0x85 and insn.src == 2 and insn.imm in linked.kfuncs}
    lines = line_info(obj, linked)
    return ProgInfo(prog.name, prog.prog_type, ArenaInfo(arena.user_vm_start, bool(arena.flags & BPF_F_NO_USER_CONV))
                    if arena is not None else None, ld, kfuncs, allow_uninit_stack=True,
                    line_info=lambda i: lines[i] if 0 <= i < len(lines) else None)


def _arena_args(name: str) -> tuple[frozenset[int], frozenset[int]]:
    """A kfunc's `*__arena` and `*__arena__nullable` arguments (1..5), by the kernel's names for its
    parameters: the verifier reads them from vmlinux BTF, as clang gives an extern's prototype none."""
    names = KERNEL_KFUNC_PARAMS.get(name, ())
    arena = frozenset(i + 1 for i, n in enumerate(names) if n.endswith("__arena") or n.endswith("__arena__nullable"))
    nullable = frozenset(i + 1 for i, n in enumerate(names) if n.endswith("__arena__nullable"))
    return arena, nullable


def line_info(obj: BpfObject, linked: LinkedProg) -> list:
    """The .BTF.ext line_info of each of the linked program's instructions (None where there is none)."""
    if obj.btf_ext is None:
        return [None] * len(linked.origin)
    by_section = {name: sorted(infos, key=lambda li: li.insn_off) for name, infos in obj.btf_ext.line_info.items()}
    keys = {name: [li.insn_off for li in infos] for name, infos in by_section.items()}
    out = []
    for section, idx in linked.origin:
        infos = by_section.get(section, [])
        k = bisect.bisect_right(keys.get(section, []), idx * BPF_INSN_SZ) - 1
        out.append(infos[k] if k >= 0 else None)
    return out


def kfunc_ids(obj: BpfObject, address_of: Callable[[str], int | None]) -> tuple[Callable[[str], int], dict[int, int]]:
    """bpf_object__resolve_ksyms_btf_id() for kfuncs: each extern kfunc an id, and each id the address
    of the native kfunc or loaded kernel function of that name; a weak one not found stays unresolved
    (a call to it is refused only if the verifier reaches it), a strong one is libbpf's error."""
    ids: dict[str, int] = {}
    addrs: dict[int, int] = {}
    for ext in obj.externs:
        if ext.kind != ExternKind.KSYM or not ext.is_func:
            continue
        ids[ext.name] = KFUNC_ID_BASE + len(ids)
        address = address_of(ext.essent_name)
        if address is not None:
            addrs[ids[ext.name]] = address
        elif not ext.weak:
            raise LoadError(f"extern (func ksym) '{ext.name}': not found in kernel or module BTFs")
    return ids.__getitem__, addrs


def verify(obj: BpfObject, prog: BpfProgram, linked: LinkedProg, arena: Arena | None, resolved: Collection[int]):
    """bpf_check() of a linked program, and its arena kfunc arguments for the JIT."""
    verified = bpf_check(decode(linked.insns), prog_info(obj, prog, linked, arena, resolved))
    arena_args = {i: tuple((a.regno, a.nullable) for a in args) for i, args in verified.arena_args.items()}
    return verified, arena_args


CORE_KINDS = ("byte_off", "byte_sz", "field_exists", "signed", "lshift_u64", "rshift_u64", "local_type_id",
              "target_type_id", "type_exists", "type_size", "enumval_exists", "enumval_value", "type_matches")


def refuse_core_relos(obj: BpfObject, linked: LinkedProg) -> None:
    """bpf_object__relocate_core() is not modelled: a CO-RE relocation the linked program carries is an error
    that names it and its instruction, not an offset silently left as clang wrote it."""
    if obj.btf_ext is None:
        return
    at = {(section, relo.insn_off // BPF_INSN_SZ): relo for section, relos in obj.btf_ext.core_relos.items()
          for relo in relos}
    for i, origin in enumerate(linked.origin):
        relo = at.get(origin)
        if relo is not None:
            kind = CORE_KINDS[relo.kind] if 0 <= relo.kind < len(CORE_KINDS) else str(relo.kind)
            raise LoadError(f"prog {linked.name}: insn {i}: CO-RE relocation {kind} of type {relo.type_id} "
                            f"({relo.access_str}) is not supported: build without CO-RE (no preserve_access_index)")


def bpf_object__load(obj: BpfObject, maps: dict[str, Arena | Map], load_insns, address_of: Callable[[str], int | None],
                     helpers: dict) -> dict[str, LoadedProgram]:
    """Each entry program of the object relocated, verified, JITed and installed with `load_insns`
    (the loader's load_bpf_insns)."""
    kfunc_id, kfunc_addrs = kfunc_ids(obj, address_of)
    arena = next((m for m in maps.values() if isinstance(m, Arena)), None)
    out = {}
    for prog in obj.entry_programs:
        if not prog.autoload:
            continue
        linked = bpf_object__relocate(obj, prog, map_refs(obj, maps), kfunc_id, address_of)
        refuse_core_relos(obj, linked)
        verified, arena_args = verify(obj, prog, linked, arena, kfunc_addrs.keys())
        code = b"".join(insn.encode() for insn in verified.insns)
        loops = {i: (loop.callback, loop.stack_base) for i, loop in verified.loops.items()}
        jit = JitOptions(kfunc_addrs, verified.stack_depths, arena_args, linked.names, loops)
        loaded = load_insns(code, prog.name, helpers, jit, line_info(obj, linked))
        out[prog.name] = LoadedProgram(prog.name, prog.sec_name, prog.prog_type, loaded.start, linked)
    return out


def load_object(path: str, bpf: BpfSubsystem, loader, call: Callable, helpers: dict) -> LoadedObject:
    """bpf_object__open() and bpf_object__load() of a file: maps created (an arena's names linked for
    the files loaded after it, as BPF_ARENA does), programs loaded; BPF_PROG_TEST_RUN runs them."""
    obj = BpfObject.open(path)

    def create_arena(m: BpfMap) -> Arena:
        arena = bpf.create_arena(m.max_entries, m.map_extra, m.map_flags, m.name)
        loader.add_arena_symbols(arena)
        return arena

    maps = create_maps(obj, create_arena, lambda m: bpf.map_create(m.type, m.key_size, m.value_size, m.max_entries,
                                                                  m.map_flags, m.name))

    def address_of(name: str) -> int | None:
        try:
            return loader.symbol(name)
        except EmuError:
            return None

    programs = bpf_object__load(obj, maps, loader.load_bpf_insns, address_of, helpers)

    def test_run(prog: LoadedProgram, ctx: bytes, data: bytes):
        """BPF_PROG_TEST_RUN: a syscall program gets its ctx copied into kernel memory (r1), none when empty,
        and copied back out after the run."""
        if not has_test_run(prog.prog_type, prog.sec_name):
            kind = prog.prog_type.name if prog.prog_type is not None else "?"
            raise EmuError(f"{prog.name}: BPF_PROG_TEST_RUN refuses SEC(\"{prog.sec_name}\") (-ENOTSUPP): "
                           f"BPF_PROG_TYPE_{kind} has no test run")
        if prog.prog_type in PACKET_PROGS:
            return _packet_test_run(bpf, call, prog, data)
        if prog.prog_type != ProgType.SYSCALL and (ctx or data):
            raise EmuError(f"{prog.name}: a test run of SEC(\"{prog.sec_name}\") with a packet or a context is "
                           "not modelled yet: syscall programs take a context, xdp programs a packet")
        if len(ctx) > U16_MAX:  # bpf_prog_test_run_syscall()
            raise EmuError(f"{prog.name}: BPF_PROG_TEST_RUN: -EINVAL: a syscall program's ctx is at most "
                           f"{U16_MAX} bytes (U16_MAX), not {len(ctx)}")
        ptr = 0
        if ctx:
            ptr = bpf.vmalloc.vmalloc(len(ctx))
            bpf.memory.write(ptr, ctx)
        result = call(prog.name, ptr, len(ctx))
        return result, bpf.memory.read(ptr, len(ctx)) if ctx else b""

    return LoadedObject(obj, maps, programs, test_run)


U16_MAX = 0xFFFF
XDP_PACKET_HEADROOM = 256
PACKET_PROGS = (ProgType.XDP, ProgType.SCHED_CLS, ProgType.SCHED_ACT)


def _packet_test_run(bpf: BpfSubsystem, call: Callable, prog: LoadedProgram, data: bytes):
    """bpf_prog_test_run_xdp() and _skb(): the packet copied after XDP_PACKET_HEADROOM bytes of
    headroom, the kernel's context for r1 (struct xdp_buff: data, data_end, data_meta,
    data_hard_start, no rxq; or this project's sk_buff: data, data_end, data_meta, len), whose
    fields the verifier converted the program's loads to; the verdict in r0, and the packet as
    the program left it."""
    hard_start = bpf.vmalloc.vmalloc(XDP_PACKET_HEADROOM + max(len(data), 1))
    start = hard_start + XDP_PACKET_HEADROOM
    bpf.memory.write(start, data)
    ctx = bpf.vmalloc.vmalloc(64)
    if prog.prog_type == ProgType.XDP:
        fields = struct.pack("<QQQQQQII", start, start + len(data), start, hard_start, 0, 0,
                             XDP_PACKET_HEADROOM + len(data), 0)
    else:
        fields = struct.pack("<QQQI", start, start + len(data), start, len(data))
    bpf.memory.write(ctx, fields)
    result = call(prog.name, ctx, 0)
    return result, bpf.memory.read(start, len(data)) if data else b""
