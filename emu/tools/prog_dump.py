"""`arena-emu prog dump xlated|jited`: a loaded program as `bpftool prog dump` prints it (tools/bpf/bpftool's
prog.c prog_dump(), xlated_dumper.c dump_xlated_plain()/_json(), jit_disasm.c disasm_print_insn(), btf_dumper.c).

The jited dump disassembles with capstone in AT&T syntax, laid out as bpftool built with LLVM prints it
(`%4x:` then a tab, mnemonic, tab, operands), since LLVM's x86 disassembler defaults to AT&T as well. Our own
addition: each instruction with an exception-table entry ends in `; extable: ...` (bpftool shows none).
The REPL's `bpf` command, the context view and fault stories use `bpf_insn_at()` for the instruction at a PC.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..bpf.btf import Btf
from ..bpf.btf_types import (
    AnyEnum,
    Array,
    Const,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Ptr,
    Restrict,
    Struct,
    Typedef,
    Union,
    Void,
    Volatile,
)
from ..bpf.core import BpfProg
from ..bpf.disasm import print_bpf_insn
from ..bpf.insn import BPF_LD_IMM64
from ..bpf.jit_extable import DONT_CLEAR, FIXUP_ARENA_REG_SHIFT, FIXUP_REG_SHIFT, PT_REGS_NAMES
from ..bpf.prog_info import (
    BpfProgInfo,
    ProgLine,
    bpf_insn_text,
    bpf_prog_get_info,
    kernel_syms_search,
    xlated_cbs,
)
from ..bpf.syscall import BpfSubsystem
from ..errors import EmuError
from ..kernel.lines import LineTable
from ..x86.decode import disasm
from ..x86.extable import EX_TYPE_BPF, ExtableEntry


def bpf_prog_linfo_lfind(keys: Sequence[int], key: int, nr_skip: int) -> int | None:
    """bpf_prog_linfo__lfind() and __lfind_addr_func(): of the records from `nr_skip` on, the last whose key
    is at most `key`; None when the first of them is already past it."""
    if nr_skip >= len(keys) or key < keys[nr_skip]:
        return None
    i = nr_skip
    while i < len(keys) and keys[i] <= key:
        i += 1
    return i - 1


def btf_dumper_type_only(btf: Btf, type_id: int) -> str:
    """btf_dumper_type_only(): a FUNC as `int name(struct xdp_md * ctx)`; "" for a type it cannot spell."""
    try:
        return _type_only(btf, type_id).rstrip()
    except ValueError:
        return ""


def _type_only(btf: Btf, type_id: int, depth: int = 0) -> str:
    """__btf_dumper_type_only(): every type but a function ends in a space."""
    if depth > 32:
        raise ValueError("type chain too deep")
    t = btf[type_id]
    if isinstance(t, Void) or type_id == 0:
        return "void "
    if isinstance(t, Int | Typedef | Float):
        return f"{t.name} "
    if isinstance(t, Struct | Union):
        return f"{'union' if isinstance(t, Union) else 'struct'} {t.name} "
    if isinstance(t, AnyEnum):
        return f"enum {t.name} "
    if isinstance(t, Array):
        return f"{_type_only(btf, t.type, depth + 1)}[{t.nelems}]"
    if isinstance(t, Ptr):
        return f"{_type_only(btf, t.type, depth + 1)}* "
    if isinstance(t, Fwd):
        return f"{'union' if t.union else 'struct'} {t.name} "
    if isinstance(t, Volatile | Const | Restrict):
        return f"{t.kind.name.lower()} {_type_only(btf, t.type, depth + 1)}"
    if isinstance(t, FuncProto):
        return _func(btf, t, None, depth)
    if isinstance(t, Func):
        proto = btf[t.type]
        if not isinstance(proto, FuncProto):
            raise ValueError("FUNC without FUNC_PROTO")
        return _func(btf, proto, t.name, depth)
    raise ValueError(f"no spelling for {t.kind.name}")


def _func(btf: Btf, proto: FuncProto, name: str | None, depth: int) -> str:
    """btf_dump_func()."""
    out = _type_only(btf, proto.ret_type, depth + 1) + (f"{name}(" if name is not None else "(")
    for i, p in enumerate(proto.params):
        if i:
            out += ", "
        if not p.type:
            out += "..."
            continue
        out += _type_only(btf, p.type, depth + 1)
        if p.name:
            out += p.name
        elif out.endswith(" "):
            out = out[:-1]
    return out + ")"


@dataclass(frozen=True)
class Dump:
    """A program's dump: the plain text, or the JSON bpftool -j prints."""

    text: str
    json: object


def _linfo_plain(line: ProgLine, linum: bool) -> list[str]:
    """btf_dump_linfo_plain() with the `; ` prefix: nothing for an empty source line."""
    src = line.info.line.lstrip()
    if not src:
        return []
    if linum:
        return [f"; {src} [file:{line.info.file_name} line_num:{line.info.line_num} line_col:{line.info.line_col}]"]
    return [f"; {src}"]


def _linfo_json(line: ProgLine, linum: bool) -> dict[str, object]:
    """btf_dump_linfo_json()."""
    out: dict[str, object] = {"src": line.info.line.lstrip()}
    if linum:
        out["file"] = line.info.file_name
        if line.info.line_num:
            out["line_num"] = line.info.line_num
        if line.info.line_col:
            out["line_col"] = line.info.line_col
    return out


def _hex(data: bytes) -> str:
    """fprint_hex() with a space between bytes (two after each eighth, a newline after each sixteenth)."""
    out = ""
    for i, b in enumerate(data):
        out += ("" if not i else "\n" if not i % 16 else "  " if not i % 8 else " ") + f"{b:02x}"
    return out


def dump_xlated(info: BpfProgInfo, symbol_at: Callable[[int], str | None], opcodes: bool = False,
                linum: bool = False) -> Dump:
    """dump_xlated_plain() and dump_xlated_json()."""
    cbs = xlated_cbs(info, symbol_at)
    insns = info.xlated
    keys = [ln.insn for ln in info.line_info]
    funcs = dict(zip(info.func_insns, info.func_info, strict=False))
    lines: list[str] = []
    docs: list[dict[str, object]] = []
    nr_skip = 0
    i = 0
    while i < len(insns):
        doc: dict[str, object] = {}
        if i in funcs and info.btf is not None:
            sig = btf_dumper_type_only(info.btf, funcs[i])
            if sig:
                lines.append(f"{sig}:")
                doc["proto"] = sig
        k = bpf_prog_linfo_lfind(keys, i, nr_skip)
        if k is not None:
            lines += _linfo_plain(info.line_info[k], linum)
            doc.update(_linfo_json(info.line_info[k], linum))
            nr_skip += 1
        double = insns[i].code == BPF_LD_IMM64 and i + 1 < len(insns)
        text = print_bpf_insn(insns, i, cbs)
        lines.append(f"{i:4d}: {text}")
        doc["disasm"] = text
        raw = insns[i].encode() + (insns[i + 1].encode() if double else b"")
        if opcodes:
            lines.append("       " + _hex(raw[:8]) + (" " + _hex(raw[8:]) if double else ""))
            doc["opcodes"] = {"code": f"{insns[i].code:#04x}", "src_reg": f"{insns[i].src:#x}",
                              "dst_reg": f"{insns[i].dst:#x}", "off": _hex_json(raw[2:4]),
                              "imm": _hex_json(raw[4:16] if double else raw[4:8])}  # 12 bytes from imm on
        docs.append(doc)
        i += 2 if double else 1
    return Dump("\n".join(lines) + "\n", docs)


def _hex_json(data: bytes) -> list[str]:
    """print_hex_data_json(): each byte as a "0x.." string."""
    return [f"{b:#04x}" for b in data]


def extable_note(entry: ExtableEntry) -> str:
    """What an EX_TYPE_BPF entry tells ex_handler_bpf(): the register it clears, the arena offset's register
    and the s16 offset it reports. Not bpftool's: the kernel's exception table is not in bpf_prog_info."""
    if entry.type != EX_TYPE_BPF:
        return f"extable: fixup {entry.fixup:#x}"
    dst = (entry.fixup >> FIXUP_REG_SHIFT) & 0xFF
    addr_reg = (entry.fixup >> FIXUP_ARENA_REG_SHIFT) & 0xFF
    off = (entry.data >> 16) & 0xFFFF
    off -= 0x10000 if off & 0x8000 else 0
    clear = "none" if dst == DONT_CLEAR else PT_REGS_NAMES.get(dst, str(dst))
    return (f"extable: fixup {entry.fixup:#x}, dst {clear}, arena reg {PT_REGS_NAMES.get(addr_reg, addr_reg)}, "
            f"off {off}")


def dump_jited(info: BpfProgInfo, opcodes: bool = False, linum: bool = False) -> Dump:
    """prog_dump()'s DUMP_JITED: per function its prototype, its kallsyms name, then disasm_print_insn()."""
    extable = {e.insn: e for e in info.extable}
    lines: list[str] = []
    docs: list[dict[str, object]] = []
    base = info.jited_ksyms[0]
    for f, (ksym, length) in enumerate(zip(info.jited_ksyms, info.jited_func_lens, strict=True)):
        doc: dict[str, object] = {}
        sig = btf_dumper_type_only(info.btf, info.func_info[f]) if info.btf and info.func_info else ""
        if sig:
            lines.append(f"{sig}:")
            doc["proto"] = sig
        lines.append(f"{info.jited_ksym_names[f]}:")
        doc["name"] = info.jited_ksym_names[f]
        recs = [k for k, ln in enumerate(info.line_info) if info.func_of(ln.insn) == f]
        keys = [info.jited_line_info[k] for k in recs]
        code = info.jited[ksym - base:ksym - base + length]
        insns_doc = []
        nr_skip = 0
        for insn in disasm(code, ksym):
            pc = insn.address - ksym
            entry: dict[str, object] = {}
            k = bpf_prog_linfo_lfind(keys, insn.address, nr_skip)
            if k is not None:
                lines += _linfo_plain(info.line_info[recs[k]], linum)
                entry.update(_linfo_json(info.line_info[recs[k]], linum))
                nr_skip += 1
            text = f"\t{insn.mnemonic}\t{insn.op_str}" if insn.op_str else f"\t{insn.mnemonic}"
            ex = extable.get(insn.address)
            lines.append(f"{pc:4x}:{text}" + (f"\t; {extable_note(ex)}" if ex is not None else ""))
            entry.update({"pc": f"{pc:#x}", "operation": insn.mnemonic,
                          "operands": [t for t in re.split(r"[ \t,()]+", insn.op_str) if t] or [None]})
            if ex is not None:
                entry["extable"] = extable_note(ex).removeprefix("extable: ")
            if opcodes:
                lines.append("\t" + "".join(f"{b:02x} " for b in insn.raw))
                entry["opcodes"] = [f"{b:#04x}" for b in insn.raw]
            insns_doc.append(entry)
        lines.append("")
        doc["insns"] = insns_doc
        docs.append(doc)
    return Dump("\n".join(lines) + "\n", docs)


@dataclass(frozen=True)
class BpfHere:
    """Where an address is in a JIT-compiled program: the program's kallsyms name, the BPF instruction
    (`INDEX: TEXT`, None in a prologue) whose code holds it, and the C line (`; TEXT [FILE:LINE]`) if known."""

    ksym: str
    insn: str | None
    probe: str | None  # the verifier's arena form of the instruction (LDX|PROBE_MEM32|DW), which the text hides
    source: str | None

    def lines(self) -> list[str]:
        """As the REPL's `bpf` prints it: the C line, then the instruction as bpftool's xlated dump does."""
        out = [self.source] if self.source else []
        if self.insn is None:
            return out + [f"in the prologue of {self.ksym}, before its first BPF instruction"]
        index, _, text = self.insn.partition(": ")
        return out + [f"{int(index):4d}: {text}" + (f"\t[{self.probe}]" if self.probe else "")]


def bpf_here(bpf: BpfSubsystem, lines: LineTable, ip: int) -> BpfHere | None:
    """The BPF instruction and C line of a JIT-compiled program at `ip`; None outside one."""
    prog = bpf.progs.bpf_prog_ksym_find(ip)
    if prog is None or prog.jited is None:
        return None
    index = prog.jited.insn_at(ip)
    probe = None
    if index is not None and "PROBE" in prog.insns[index].name:
        probe = prog.insns[index].name
    at = ip
    if index is None:  # a prologue is its function's first line, as bpf_prog_fill_jited_linfo() says
        at = next((b for b, e in prog.jited.insn_ranges if b >= ip and e > b), ip)
    where = lines.containing(at)
    source = None
    if where is not None and where[0] in lines.sources:
        source = f"; {lines.source(*where)} [{os.path.basename(where[0])}:{where[1]}]"
    return BpfHere(prog.ksym, bpf_insn_text(bpf.progs, bpf.maps, bpf.kallsyms, ip), probe, source)


def program_info(bpf: BpfSubsystem, prog: BpfProg, obj=None, linked=None) -> BpfProgInfo:
    """bpf_prog_get_info() of a loaded program and its subprograms."""
    progs = [p for p in bpf.progs if p.main_prog is prog.main_prog]
    return bpf_prog_get_info(progs, bpf.maps, obj, linked)


def prog_dump(bpf: BpfSubsystem, loaded, name: str, mode: str, opcodes: bool = False, linum: bool = False) -> Dump:
    """`bpftool prog dump xlated|jited` of program `name` of a loaded object."""
    if name not in loaded.programs:
        raise EmuError(f"no program '{name}' in {loaded.obj.name}: there are {', '.join(loaded.programs)}")
    lp = loaded.programs[name]
    prog = bpf.progs.bpf_prog_ksym_find(lp.entry)
    if prog is None or prog.jited is None:
        raise EmuError(f"program '{name}' is not JITed")
    info = program_info(bpf, prog, loaded.obj, lp.linked)
    if mode == "xlated":
        return dump_xlated(info, kernel_syms_search(bpf.kallsyms), opcodes, linum)
    return dump_jited(info, opcodes, linum)


def dump_json(dump: Dump) -> str:
    return json.dumps(dump.json, indent=2)
