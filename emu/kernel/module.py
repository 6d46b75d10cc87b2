"""Loading code into the running kernel, after kernel/module/main.c's load_module(): one pipeline.

sources -> declarations (the kernel functions and arenas a file names) -> the
linked image -> its BPF programs (what the verifier and the JIT make of them) ->
installed: sections in memory, symbols in kallsyms, entries in the exception
table, programs registered, lines recorded. A load that fails at any stage
installs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ..asm.assembler import Assembler
from ..asm.image import SECTIONS, Image, LinkedSection
from ..asm.unit import Source
from ..bpf.arena import Arena
from ..bpf.core import BpfProg
from ..bpf.kfuncs import NativeKfunc
from ..bpf.syscall import BpfSubsystem, JitOptions
from ..corpus import kernel_stub_defining
from ..errors import AsmError, Diagnostic, EmuError
from ..mm.layout import KERNEL_TEXT_START, KFUNC_PAGE
from ..mm.memory import KernelMemory
from ..mm.physmem import FrameKind
from ..x86.extable import ExceptionTable
from ..x86.pgtable import PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_KERNEL_ROX
from ..x86.unwind_orc import OrcTable
from .kallsyms import Kallsyms, Symbol
from .lines import LineTable
from .objfile import ObjectError, ObjectFile, ObjSymbol, is_elf, layout, link, read_object, read_source

SECTION_BASES = {"text": KERNEL_TEXT_START, "rodata": 0xFFFF_FFFF_8200_0000,
                 "data": 0xFFFF_FFFF_8280_0000, "bss": 0xFFFF_FFFF_8300_0000}
SECTION_PROT = {"text": PAGE_KERNEL_ROX, "rodata": PAGE_KERNEL_RO, "data": PAGE_KERNEL, "bss": PAGE_KERNEL}


class Loader:
    def __init__(self, memory: KernelMemory, kallsyms: Kallsyms, extable: ExceptionTable, lines: LineTable,
                 orc: OrcTable, bpf: BpfSubsystem):
        self.memory, self.kallsyms, self.extable, self.lines, self.bpf = memory, kallsyms, extable, lines, bpf
        self.orc = orc
        self.link_symbols: dict[str, int] = {}  # link-time constants: arena map pointers and addresses
        self.loaded: list[Callable[[], None]] = []  # told after each load: code changed
        self._cursor = dict(SECTION_BASES)
        self._assembler = Assembler()

    def load(self, *paths: str, syntax: str = "att") -> Image:
        """Assemble and link files as one unit against what is already loaded: assembly
        sources and x86-64 relocatable objects (`.o`), in any mix."""
        sources, objects = [], []
        for path in paths:
            name = os.path.relpath(path) if not os.path.isabs(path) else path
            try:
                with open(path, "rb") as f:
                    data = f.read()
                if is_elf(data):
                    objects.append(read_object(name, data))
                elif name.endswith(".o"):
                    raise ObjectError(f"{name}: not an ELF object")
                else:
                    sources.append(Source(name, data.decode("utf-8")))
            except (OSError, UnicodeDecodeError) as e:
                raise EmuError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        return self.load_sources(sources, syntax=syntax, objects=objects)

    def load_sources(self, sources: list[Source], syntax: str = "att", objects: Sequence[ObjectFile] = ()) -> Image:
        if syntax not in ("att", "intel"):
            raise EmuError(f"syntax is 'att' or 'intel', not '{syntax}'")
        decls = self._assembler.declarations(sources, syntax)
        defined = self._object_globals(objects)
        self._resolve_ksyms([k for k in decls.ksyms if k[0] not in defined], {s.name for s in sources})
        for decl in decls.arenas:
            arena = self.bpf.declare_arena(decl)
            if arena is not None:
                self.add_arena_symbols(arena)
        extern = dict(self.link_symbols)
        extern.update({name: s.address for name, s in self.kallsyms.global_symbols().items()})
        after_objects = layout(objects, self._cursor)
        extern.update({name: obj.address_of(sym) for name, (obj, sym) in defined.items()})  # type: ignore[misc]  # all placed
        image = self._assembler.assemble(sources, after_objects, extern, syntax)
        progs, jit_extable = self.bpf.bpf_prog_load(image)
        images = [image]
        if objects:
            asm = {name: addr for name, addr, _, is_global, _ in image.symbols if is_global}
            images.insert(0, link(objects, self._cursor, lambda n: asm.get(n, extern.get(n))))
        display = {(p.name, p.start): p.ksym for p in progs}
        for linked in images:
            self._install(linked, display, debuginfo=linked is not image)
        for entry in jit_extable:
            self.extable.add(entry)
        self.lines.add({}, {s.name: s.text for s in sources},
                       paths={s.name: os.path.abspath(s.name) for s in sources if os.path.isfile(s.name)})
        self.bpf.add_progs(progs)
        for listener in self.loaded:
            listener()
        return image

    def _object_globals(self, objects: Sequence[ObjectFile]) -> dict[str, tuple[ObjectFile, ObjSymbol]]:
        """The symbols the objects define for everyone, each defined once across the whole kernel."""
        out: dict[str, tuple[ObjectFile, ObjSymbol]] = {}
        errors = []
        for obj in objects:
            for name, sym in obj.defined_globals().items():
                if name in out:
                    errors.append(f"{obj.path}: symbol '{name}' is already defined in {out[name][0].path}")
                elif name in self.kallsyms or name in self.link_symbols:
                    errors.append(f"{obj.path}: symbol '{name}' is already defined by the machine")
                else:
                    out[name] = (obj, sym)
        if errors:
            raise ObjectError("\n".join(errors))
        return out

    def _install(self, image: Image, display: dict[tuple[str, int], str], debuginfo: bool) -> None:
        for name in SECTIONS:
            sect = image.sections[name]
            if not sect.data:
                continue
            self.memory.install(sect.start, bytes(sect.data), SECTION_PROT[name],
                                FrameKind.TEXT if name == "text" else FrameKind.DATA)
            self.kallsyms.add_section(sect.start, sect.start + len(sect.data))
            self._cursor[name] = max(self._cursor[name], sect.start + len(sect.data))
        for name, addr, section, is_global, file in image.symbols:
            self.kallsyms.add(Symbol(name, addr, section, is_global, file, display.get((name, addr), "")))
        for entry in image.extable:
            self.extable.add(entry)
        self.lines.add(image.lines, image.sources, debuginfo=debuginfo, paths=image.source_paths)
        self.orc.add(image.unwind)  # unwind_module_init()

    def load_bpf_insns(self, code: bytes, name: str, helpers: dict[int, NativeKfunc], jit: JitOptions | None = None,
                       lines: list | None = None) -> BpfProg:
        """Load bytecode as BPF_PROG_LOAD does: JITed into kernel text after what is loaded, its
        exception table and symbols installed (bpf_prog_<tag>_<name> for each function), and, for
        `lines` (each instruction's .BTF.ext line_info or None), the C line of its x86 code."""
        address = -(-self._cursor["text"] // 16) * 16
        at = {helper_id: self.kallsyms.lookup_name(k.name) for helper_id, k in helpers.items()}
        progs, jited = self.bpf.bpf_prog_load_insns(code, name, address, at, jit)
        sections = {s: LinkedSection(s, self._cursor[s], bytearray()) for s in SECTIONS}
        sections["text"] = LinkedSection("text", address, bytearray(jited.code))
        x86_lines: dict[int, tuple[str, int]] = {}
        sources: dict[str, dict[int, str]] = {}
        for (start, end), li in zip(jited.insn_ranges, lines or [], strict=False):
            if li is not None and end > start:
                x86_lines[start] = (li.file_name, li.line_num)
                sources.setdefault(li.file_name, {})[li.line_num] = li.line
        texts = {f: read_source(f) or self._btf_source(f, by_line) for f, by_line in sources.items()}
        image = Image(sections, [(p.name, p.start, "text", False, "<bpf>") for p in progs], list(jited.extable),
                      x86_lines, sources=texts)
        self._install(image, {(p.name, p.start): p.ksym for p in progs}, debuginfo=bool(x86_lines))
        self.bpf.add_progs(progs)
        for listener in self.loaded:
            listener()
        return progs[0]

    def _btf_source(self, file: str, by_line: dict[int, str]) -> str:
        """A file not on disk, from the line texts .BTF.ext carries: this program's, over those of
        the programs of the same file loaded before it (each is loaded on its own)."""
        known = {n: text for n, text in enumerate(self.lines.sources.get(file, []), 1) if text}
        known.update(by_line)
        return "\n".join(known.get(n, "") for n in range(1, max(known) + 1))

    def regions(self) -> list[tuple[str, int, int]]:
        """Where each kind of loaded section lies: (text, rodata, data or bss, start, end); text
        from the native kfuncs' page below kernel text."""
        return [(name, KFUNC_PAGE if name == "text" else base, self._cursor[name])
                for name, base in SECTION_BASES.items()]

    def add_arena_symbols(self, arena: Arena) -> None:
        """For every file loaded after it, an arena's name links to its map pointer (the kfuncs'
        p__map), and ARENA_KERN_VM_START / ARENA_USER_VM_START to its addresses."""
        self.link_symbols.update({arena.name: arena.map_ptr, "ARENA_KERN_VM_START": arena.kern_vm_start,
                                  "ARENA_USER_VM_START": arena.user_vm_start})

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

    def symbol(self, name: str) -> int:
        if name in self.link_symbols:
            return self.link_symbols[name]
        return self.kallsyms.lookup_name(name)

    def symbol_scope(self) -> dict[str, int]:
        """Every symbol and link-time constant, for evaluating expressions over them."""
        return {s.name: s.address for s in self.kallsyms.symbols()} | self.link_symbols

