"""The symbol file for gdb: kallsyms' names and the line table, read back with pyelftools and by gdb itself."""

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from emu.corpus import bpf_prog, stub
from emu.tools.build import build_kernel, kernel_compilers
from emu.tools.debugger import Debugger
from emu.tools.symfile import write_symbol_file

ROOT = Path(__file__).resolve().parent.parent


def test_the_symbol_file_names_every_symbol_and_line():
    d = Debugger([bpf_prog("scratch.S")], "arena_arg_unpopulated", [])
    elf = ELFFile(io.BytesIO(write_symbol_file(d.m).read_bytes()))
    syms = {s.name: s for s in elf.get_section_by_name(".symtab").iter_symbols()}
    prog = d.m.progs.by_name["arena_arg_unpopulated"]
    assert syms[prog.ksym]["st_value"] == prog.start and syms[prog.ksym]["st_info"]["type"] == "STT_FUNC"
    assert syms["bpf_kfunc_arena_read_u64"]["st_value"] == d.m.symbol("bpf_kfunc_arena_read_u64")
    dwarf = elf.get_dwarf_info()
    (cu,) = dwarf.iter_CUs()
    prog_lines = dwarf.line_program_for_CU(cu)
    names = [f.name.decode() for f in prog_lines.header["file_entry"]]
    rows = {e.state.address: (names[e.state.file - 1], e.state.line) for e in prog_lines.get_entries()
            if e.state is not None and not e.state.end_sequence}
    expected = {a: (str(Path(f).resolve()), n) for a, (f, n) in d.m.lines.items()}
    assert rows == expected


needs_gdb = pytest.mark.skipif(shutil.which("gdb") is None or not kernel_compilers(),
                               reason="needs gdb and a C compiler (.ci/run installs gdb)")


@needs_gdb
def test_gdb_breaks_on_a_c_line_and_names_the_bpf_program_and_the_kfunc():
    kfuncs = build_kernel(stub("arena_kfuncs_c.c"))
    server = subprocess.Popen([sys.executable, "-m", "emu", "debug", str(kfuncs), stub("string.S"),
                               bpf_prog("arena_kfunc_c.S"), "--entry", "c_kfunc_read_unallocated", "--gdb", "0",
                               "--once"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", server.stdout.readline()).group(1))
        symbols = re.search(r"symbol-file (\S+)", server.stderr.readline()).group(1)
        line = 1 + Path(stub("arena_kfuncs_c.c")).read_text().splitlines().index("\treturn *p__arena;")
        gdb = subprocess.run(["gdb", "-nx", "-batch", "-ex", f"symbol-file {symbols}", "-ex",
                              f"target remote 127.0.0.1:{port}", "-ex", f"break arena_kfuncs_c.c:{line}",
                              "-ex", "continue", "-ex", "bt", "-ex", "p/x $rip"], capture_output=True, text=True,
                             timeout=60)
        server.wait(timeout=30)
    finally:
        server.kill()
    out = gdb.stdout
    assert f"Breakpoint 1, bpf_kfunc_c_arena_read_u64 () at {stub('arena_kfuncs_c.c')}:{line}" in out
    assert f"{line}\t\treturn *p__arena;" in out
    assert re.search(r"#1  0x[0-9a-f]+ in bpf_prog_[0-9a-f]{16}_c_kfunc_read_unallocated \(\) at "
                     + re.escape(bpf_prog("arena_kfunc_c.S")) + r":\d+", out)


def _line_rows(path: Path) -> list[tuple[int, int, str | None, int]]:
    """Each row of the symbol file's line table as [start, end) with its file and line."""
    elf = ELFFile(io.BytesIO(path.read_bytes()))
    dwarf = elf.get_dwarf_info()
    (cu,) = dwarf.iter_CUs()
    program = dwarf.line_program_for_CU(cu)
    names = [f.name.decode() for f in program.header["file_entry"]]
    states = [e.state for e in program.get_entries() if e.state is not None]
    return [(a.address, b.address, names[a.file - 1], a.line) for a, b in zip(states, states[1:], strict=False)
            if not a.end_sequence]


def test_a_jit_images_prologue_is_not_the_line_of_the_code_before_it():
    d = Debugger([stub("arena_kfuncs.S"), bpf_prog("off_by_one.bpf.o")], "off_by_one", [])
    prog = d.m.progs.by_name["off_by_one"]
    first = min(a for a in d.m.lines if prog.start <= a < prog.end)
    assert first > prog.start  # the JIT's prologue has no line of its own
    rows = _line_rows(write_symbol_file(d.m))
    assert [r for r in rows if r[0] <= prog.start < r[1]] == []
    (at_first,) = [r for r in rows if r[0] == first]
    assert at_first[2:] == ("./off_by_one.bpf.c", 14)


@needs_gdb
def test_gdb_breaks_on_a_line_of_a_bpf_c_program_and_names_it_under_the_kfunc():
    server = subprocess.Popen([sys.executable, "-m", "emu", "debug", stub("arena_kfuncs.S"),
                               bpf_prog("off_by_one.bpf.o"), "--entry", "off_by_one", "--gdb", "0", "--once"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+)", server.stdout.readline()).group(1))
        symbols = re.search(r"symbol-file (\S+)", server.stderr.readline()).group(1)
        gdb = subprocess.run(["gdb", "-nx", "-batch", "-ex", f"symbol-file {symbols}", "-ex",
                              f"target remote 127.0.0.1:{port}", "-ex", "break off_by_one.bpf.c:21",
                              "-ex", "break bpf_kfunc_arena_read_u64", "-ex", "continue", "-ex", "continue",
                              "-ex", "continue", "-ex", "bt"], capture_output=True, text=True, timeout=60)
        server.wait(timeout=30)
    finally:
        server.kill()
    out = gdb.stdout
    assert re.search(r"^0x[0-9a-f]+ in bpf_prog_[0-9a-f]{16}_off_by_one \(\)$", out, re.M)  # no line: the prologue
    assert "Breakpoint 1 at 0x" in out and ": file ./off_by_one.bpf.c, line 21." in out
    # the store to the third page faults first (the debugger stops on faults: gdb sees SIGSEGV)
    assert re.search(r"SIGSEGV.*\nbpf_prog_[0-9a-f]{16}_off_by_one \(\) at \./off_by_one\.bpf\.c:20\n", out)
    assert re.search(r"Breakpoint 1, bpf_prog_[0-9a-f]{16}_off_by_one \(\) at \./off_by_one\.bpf\.c:21\n", out)
    assert f"Breakpoint 2, bpf_kfunc_arena_read_u64 () at {stub('arena_kfuncs.S')}:13" in out
    assert re.search(r"#1  0x[0-9a-f]+ in bpf_prog_[0-9a-f]{16}_off_by_one \(\) at \./off_by_one\.bpf\.c:21\n", out)
