"""Kernel code in C: x86-64 relocatable objects built with the kernel's flags, linked beside assembly."""

import json
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu import Machine
from emu.corpus import bpf_prog, stub
from emu.errors import EmuError
from emu.kernel.objfile import ObjectError
from emu.policy import POLICIES
from emu.tools.build import BuildError, build_kernel, kernel_compilers
from emu.tools.cli import main

KFUNCS_C = stub("arena_kfuncs_c.c")
KFUNC_LINE = 1 + next(i for i, line in enumerate(Path(KFUNCS_C).read_text().splitlines())
                      if "return *p__arena;" in line)


def _compilers():
    by_kind = {}
    for c in kernel_compilers():
        by_kind.setdefault(c.name if c.name != "cc" else "gcc", c)
    return by_kind


COMPILERS = _compilers()


@pytest.fixture(params=sorted(COMPILERS) or [pytest.param(None, marks=pytest.mark.skip("no C compiler"))])
def compiler(request):
    return COMPILERS[request.param]


@pytest.fixture
def kfuncs(compiler):
    return str(build_kernel(KFUNCS_C, compiler=compiler))


def _load(m, kfuncs, *more):
    m.load(kfuncs, stub("string.S"), *more)


def test_globals_in_data_bss_and_rodata_and_calls_both_ways(kfuncs, tmp_path):
    m = Machine()
    caller = tmp_path / "caller.S"
    caller.write_text("\t.text\nSYM_FUNC_START(asm_calls_c)\n\tpush %rbp\n\tmov %rsp, %rbp\n"
                      "\tcall c_kfunc_owner_initial\n\tpop %rbp\n\tret\nSYM_FUNC_END(asm_calls_c)\n")
    _load(m, kfuncs, str(caller))
    assert m.call("asm_calls_c").ret == ord("a")  # assembly calls C, C reads its .rodata string
    assert m.read_u64(m.symbol("c_kfunc_calls")) == 0  # .bss starts zeroed
    assert m.read(m.symbol("c_kfunc_last_len"), 4) == b"\xff\xff\xff\xff"  # .data keeps its initializer
    src, dst = m.vmalloc(4096), m.vmalloc(4096)
    m.write(src, b"0123456789abcdef")
    r = m.call("bpf_kfunc_c_arena_copy", dst, src, 10)  # C calls memcpy in string.S
    assert (r.status, r.ret, m.read(dst, 12)) == ("returned", dst, b"0123456789\0\0")
    assert (m.read_u64(m.symbol("c_kfunc_calls")), m.read(m.symbol("c_kfunc_last_len"), 4)) == (1, b"\x0a\0\0\0")
    assert m.symbolize(m.symbol("bpf_kfunc_c_arena_copy") + 4).startswith("bpf_kfunc_c_arena_copy+0x4/")


def test_an_asm_extable_guard_in_inline_assembly_fixes_the_fault_up(kfuncs):
    m = Machine()
    _load(m, kfuncs)
    buf = m.vmalloc(4096)
    m.write_u64(buf, 0x1234)
    assert m.call("c_read_u64_nofault", buf + 8, buf).ret == 0 and m.read_u64(buf + 8) == 0x1234
    r = m.call("c_read_u64_nofault", buf + 8, 0xFFFF_C900_4000_0000)
    assert r.ret_signed == -14
    (fault,) = r.faults
    assert (fault.resolution, fault.handler, fault.action) == ("extable", "ex_handler_default", "fixup")
    assert fault.source == f"arena_kfuncs_c.c:{_line_of(m, fault.rip)}"
    assert "  source: arena_kfuncs_c.c:" in fault.story()


def _line_of(m, ip):
    return m.line_table.containing(ip)[1]


@pytest.mark.parametrize("policy", POLICIES)
def test_a_c_kfunc_on_an_unallocated_page_under_every_policy(kfuncs, policy):
    m = Machine(policy=policy)
    _load(m, kfuncs, bpf_prog("arena_kfunc_c.S"))
    r = m.call("c_kfunc_read_unallocated")
    read = m.symbol("bpf_kfunc_c_arena_read_u64")
    if policy == "oops":
        assert r.status == "oops"
        (fault,) = r.faults
        rip_line = next(line for line in r.oops.splitlines() if line.startswith("RIP:"))
        assert rip_line == f"RIP: 0010:{m.symbolize(fault.rip)} arena_kfuncs_c.c:{KFUNC_LINE}"
        assert read <= fault.rip < read + 16
        assert fault.address == m.arena.kern_addr(m.arena.user_vm_start + 0x1000)
        return
    assert (r.status, r.ret) == ("returned", 7)
    if policy == "map-always":
        assert r.faults == [] and m.stream_text() == ""
        return
    (fault,) = r.faults
    assert (fault.resolution, fault.action, fault.completed) == ("scratch", "restart", True)
    assert fault.source == f"arena_kfuncs_c.c:{KFUNC_LINE}"
    report = m.stream_text()
    assert report.startswith(f"ERROR: Arena READ access at unmapped address {m.arena.user_vm_start + 0x1000:#x}\n")
    trace = report.split("Call trace:\n")[1].splitlines()
    assert trace[0] == m.symbolize(fault.rip)
    assert re.fullmatch(r"bpf_prog_[0-9a-f]{16}_c_kfunc_read_unallocated\+0x[0-9a-f]+/0x[0-9a-f]+", trace[1])
    second_call = [i + 1 for i, line in enumerate(Path(bpf_prog("arena_kfunc_c.S")).read_text().splitlines())
                   if "call\tbpf_kfunc_c_arena_read_u64" in line][1]
    assert trace[2] == f"  call bpf_kfunc_c_arena_read_u64 @ arena_kfunc_c.S:{second_call}"


def test_a_c_kfunc_walks_an_arena_list_with_the_native_kern_vm_start(kfuncs):
    m = Machine()
    _load(m, kfuncs, bpf_prog("arena_kfunc_c.S"))
    assert m.call("c_kfunc_list_sum").ret == 6


def test_the_cli_builds_and_runs_kernel_c_beside_assembly(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code = main(["run", "kernel_stubs/arena_kfuncs_c.c", "kernel_stubs/string.S", "bpf_progs/arena_kfunc_c.S",
                 "--entry", "c_kfunc_read_unallocated", "--policy", "oops", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert (code, doc["status"], doc["faults"][0]["source"]) == (1, "oops", f"arena_kfuncs_c.c:{KFUNC_LINE}")
    assert f" arena_kfuncs_c.c:{KFUNC_LINE}\n" in doc["oops"]


def test_build_writes_the_object_and_a_compile_error_is_the_compilers_own(capsys, tmp_path):
    src = tmp_path / "k.c"
    src.write_text("long answer(void) { return 42; }\n")
    assert main(["build", "--kernel", str(src)]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'k.o'}\n"
    m = Machine()
    m.load(str(tmp_path / "k.o"))
    assert m.call("answer").ret == 42
    src.write_text("long answer(void) { return 42 }\n")
    assert main(["build", "--kernel", str(src), "-o", str(tmp_path / "x.o")]) == 2
    err = capsys.readouterr().err
    assert "k.c:1:" in err and "error" in err and "Traceback" not in err


def _build(tmp_path, name, text, *extra, compiler=None):
    (tmp_path / name).write_text(text)
    return str(build_kernel(tmp_path / name, tmp_path / (name[:-2] + ".o"), compiler=compiler, extra=extra))


def test_undefined_symbols_name_who_references_them(tmp_path):
    obj = _build(tmp_path, "u.c", "extern long nope(void);\nlong f(void) { return nope() + 1; }\n")
    with pytest.raises(ObjectError) as e:
        Machine().load(obj)
    assert re.fullmatch(rf"undefined symbol 'nope' \(referenced by {re.escape(obj)}: \.rela\.text\+0x[0-9a-f]+\)",
                        str(e.value))


def test_a_32_bit_reference_out_of_range_names_file_section_offset_and_symbol(tmp_path):
    obj = _build(tmp_path, "far.c",
                 "extern char far_away[];\nunsigned long f(void) { return (unsigned long)far_away; }\n")
    far = tmp_path / "far.S"
    far.write_text("\t.globl far_away\n\t.set far_away, 0xffffc90000000000\n")
    with pytest.raises(ObjectError) as e:
        Machine().load(obj, str(far))
    assert re.fullmatch(rf"{re.escape(obj)}: \.rela\.text\+0x[0-9a-f]+: R_X86_64_32S against 'far_away': value "
                        r"0xffffc90000000000 does not fit in 32 bits, sign-extended", str(e.value))


def test_pic_code_is_refused_with_the_flag_that_fixes_it(tmp_path):
    if "gcc" not in COMPILERS:
        pytest.skip("needs gcc to build position-independent code")
    (tmp_path / "pic.c").write_text("long counter;\nlong f(void) { return counter; }\n")
    obj = tmp_path / "pic.o"
    subprocess.run([COMPILERS["gcc"].command[0], "-c", "-O2", "-fpic", str(tmp_path / "pic.c"), "-o", str(obj)],
                   check=True)
    with pytest.raises(ObjectError) as e:
        Machine().load(str(obj))
    assert re.fullmatch(rf"{re.escape(str(obj))}: \.rela\.text\+0x[0-9a-f]+: R_X86_64_(REX_)?GOTPCRELX? not "
                        r"supported \(build with -fno-pic\)", str(e.value))


@pytest.mark.parametrize(("data", "message"), [
    (b"not an object at all", "x.o: not an ELF object"),
    (b"\x7fELF\x02\x01\x01" + b"\0" * 9, "x.o: not a valid ELF file"),
])
def test_malformed_files_are_one_line_errors(tmp_path, data, message):
    (tmp_path / "x.o").write_bytes(data)
    with pytest.raises(EmuError) as e:
        Machine().load(str(tmp_path / "x.o"))
    assert str(e.value).startswith(message.replace("x.o", str(tmp_path / "x.o"))) and "\n" not in str(e.value)


def test_objects_of_other_machines_and_kinds_are_refused(tmp_path, kfuncs):
    data = bytearray(Path(kfuncs).read_bytes())
    data[18:20] = (0xF7).to_bytes(2, "little")  # EM_BPF
    (tmp_path / "bpf.o").write_bytes(data)
    with pytest.raises(ObjectError, match=r"bpf\.o: not an x86-64 object \(class 64, machine EM_BPF\)$"):
        Machine().load(str(tmp_path / "bpf.o"))
    data = bytearray(Path(kfuncs).read_bytes())
    data[16:18] = (3).to_bytes(2, "little")  # ET_DYN
    (tmp_path / "dyn.o").write_bytes(data)
    with pytest.raises(ObjectError, match=r"dyn\.o: not a relocatable object \(ET_DYN\); build it with -c$"):
        Machine().load(str(tmp_path / "dyn.o"))


def test_a_missing_compiler_override_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(BuildError, match=r"^\$CC=/nonexistent/cc does not run$"):
        kernel_compilers()


@pytest.fixture(scope="module")
def object_bytes():
    if not COMPILERS:
        pytest.skip("no C compiler")
    return Path(build_kernel(KFUNCS_C)).read_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncated_and_mutated_objects_never_escape_as_tracebacks(tmp_path, object_bytes, data):
    blob = bytearray(object_bytes)
    if data.draw(st.booleans()):
        blob = blob[:data.draw(st.integers(0, len(blob)))]
    for _ in range(data.draw(st.integers(0, 12))):
        if blob:
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "fuzz.o"
    path.write_bytes(bytes(blob))
    try:
        m = Machine()
        m.load(str(path), stub("string.S"))
    except EmuError as e:
        assert str(e) and "Traceback" not in str(e)


def test_explore_takes_kernel_c_beside_assembly(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code = main(["explore", "kernel_stubs/arena_kfuncs_c.c", "kernel_stubs/string.S", "bpf_progs/arena_kfunc_c.S",
                 "--cpus", "1", "--entry0", "c_kfunc_read_unallocated", "--schedule", "0:*"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert re.fullmatch(r"#1 cpu0 #PF read 0x[0-9a-f]+ at bpf_kfunc_c_arena_read_u64\+0x[0-9a-f]+/0x[0-9a-f]+: "
                        r"scratch \(restart\) \[completed\]", out[0])
    assert out[1] == "schedule '0:*': cpu0 returned 0x7, 1 report"
