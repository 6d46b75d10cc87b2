"""Bad input to the arena-emu command, as a new user types it: one clear line and exit 2, never a traceback."""

import json
import socket
from pathlib import Path

import pytest

from emu.corpus import stub
from emu.tools.cli import main

LIST = stub("list.S")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("argv", "message"), [
    (["--map", "0xffffc90020000000,99999999999999"],
     "arena-emu: cannot map 0x5af3107a4000 bytes: guest RAM is 0x4000000 bytes\n"),
    (["--map", "0x1"], "arena-emu: --map 0x1: ADDR must be a page-aligned 64-bit address\n"),
    (["--map", "0xffffc90020000000,0"], "arena-emu: --map 0xffffc90020000000,0: SIZE must be positive\n"),
    (["--arg", "99999999999999999999999999"],
     "arena-emu: --arg 99999999999999999999999999: does not fit in a 64-bit register\n"),
    (["--ram", "999999G"], "arena-emu: guest RAM is at most 64 GiB, not 0x3d08fc0000000 bytes\n"),
])
def test_out_of_range_arguments_are_one_line_errors(capsys, argv, message):
    assert run(capsys, "run", LIST, "--entry", "list_sum", *argv)[::2] == (2, message)


def test_a_map_size_is_rounded_up_to_whole_pages(capsys):
    code, out, _ = run(capsys, "run", stub("maccess.S"), "--entry", "copy_from_kernel_nofault", "--map",
                       "0xffffc90020000000,5000", "--arg", "0xffffc90020001ff8", "--arg", "0xffffc90020000000",
                       "--arg", "8", "--json")
    assert (code, json.loads(out)["ret"]) == (0, 0)


def test_a_negative_argument_is_its_64_bit_twos_complement(capsys):
    src = Path(LIST).parent / "string.S"
    code, out, _ = run(capsys, "run", str(src), "--entry", "memset", "--arg", "-1", "--arg", "0", "--arg", "0",
                       "--json")
    assert (code, json.loads(out)["ret"]) == (0, 0xFFFF_FFFF_FFFF_FFFF)


def test_budget_zero_runs_uncounted_in_run_and_debug(capfd):
    code, out, _ = run(capfd, "run", LIST, "--entry", "list_sum", "--arg", "demo_list", "--budget", "0", "--json")
    doc = json.loads(out)
    assert (code, doc["ret"], doc["insns"]) == (0, 60, None)
    code, out, _ = run(capfd, "debug", LIST, "--entry", "list_sum", "--arg", "demo_list", "--budget", "0",
                       "--batch", "-ex", "set context off", "-ex", "continue")
    assert code == 0 and "returned 0x3c" in out


def test_a_schedule_step_beyond_the_cpus_is_refused(capsys):
    code, _, err = run(capsys, "explore", "bpf_progs/smp.S", "--entry0", "h3_reader", "--schedule", "5:3")
    assert (code, err) == (2, "arena-emu: --schedule: 5:3 names a CPU beyond --cpus 2\n")


def test_a_gdb_port_in_use_is_a_one_line_error(capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "debug", LIST, "--entry", "list_sum", "--gdb", str(port))
    assert code == 2
    assert err.startswith(f"arena-emu: --gdb {port}: cannot listen on 127.0.0.1:{port}: ") and err.count("\n") == 1


def test_shipped_programs_are_found_from_any_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "run", "bpf_progs/stream.S", "--entry", "stream_arena_read_fault", "--json")
    assert (code, json.loads(out)["status"]) == (0, "returned")


def test_build_finds_a_shipped_program_from_any_directory(capsys, tmp_path, monkeypatch):
    from bpf_build import build

    build("use_after_free")  # skips only if no compiler exists at all
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "mine.bpf.o"
    assert run(capsys, "build", "bpf_progs/off_by_one.bpf.c", "-o", str(out))[:2] == (0, f"{out}\n")
    assert run(capsys, "build", "bpf_progs/off_by_one.bpf.c")[:2] == (0, f"{tmp_path / 'off_by_one.bpf.o'}\n")
    assert out.read_bytes()[:4] == (tmp_path / "off_by_one.bpf.o").read_bytes()[:4] == b"\x7fELF"


def test_compare_takes_policies_knobs_and_the_users_scenario_files(capsys, tmp_path):
    (tmp_path / "mine.toml").write_text('''title = "a user's scenario"
files = ["bpf_progs/scratch.S"]
entry = "arena_arg_unpopulated"
[expect]
oops = { status = "oops" }
map-always = { ret = 0, reports = 0 }
scratch-v1 = { ret = 0, reports = 1 }
scratch = { ret = 0, reports = 1 }
''')
    code, out, _ = run(capsys, "compare", str(tmp_path / "mine.toml"), "--scenario", "mine", "--scenario",
                       "lost-write", "--policy", "scratch", "--knob", "flush-on-replace")
    assert code == 0
    assert out.splitlines() == [
        "scenario    scratch+flush-on-replace",
        "----------  ---------------------------------",
        "lost-write  write reached the page, 2 reports",
        "mine        ret 0x0, 1 report",
    ]


def test_an_empty_file_name_is_one_line_error(capsys):
    assert run(capsys, "run", "", "--entry", "list_sum")[::2] == (2, "arena-emu: a file name is empty\n")


def test_a_scenario_file_that_is_not_text_is_one_line_error(capsys, tmp_path):
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    code, _, err = run(capsys, "compare", str(tmp_path / "bin.toml"), "--scenario", "lost-write")
    assert (code, err.startswith(f"arena-emu: {tmp_path / 'bin.toml'}: 'utf-8' codec can't decode")) == (2, True)


@pytest.mark.parametrize("name", ["", "/", "/nonexistent/k.c"])
def test_build_of_no_file_is_a_one_line_error(capsys, name):
    assert run(capsys, "build", name, "--kernel")[::2] == (2, f"arena-emu: cannot read {name}: no such file\n")


@pytest.mark.parametrize("argv", [["run"], ["prog", "dump", "xlated"], ["debug", "--entry", "x"]])
def test_a_missing_bpf_c_file_is_arena_emus_one_line_error(capsys, argv):
    assert run(capsys, *argv, "nosuch.bpf.c")[::2] == (2, "arena-emu: cannot read nosuch.bpf.c: no such file\n")


def test_a_bpf_compiler_that_does_not_run_is_arena_emus_one_line_error(capsys, tmp_path, monkeypatch):
    from emu.tools.build import bpf_compiler

    (tmp_path / "x.bpf.c").write_text("int x;\n")
    monkeypatch.setenv("CLANG", "/nonexistent/clang")
    bpf_compiler.cache_clear()
    try:
        assert run(capsys, "build", str(tmp_path / "x.bpf.c"))[::2] == (
            2, "arena-emu: $CLANG=/nonexistent/clang does not run\n")
    finally:
        bpf_compiler.cache_clear()


def test_an_object_without_programs_says_so(capsys, tmp_path):
    from bpf_build import build

    build("use_after_free")  # skips only if no compiler exists at all
    src = tmp_path / "empty.bpf.c"
    src.write_text("int x;\n")
    assert run(capsys, "run", str(src))[::2] == (2, "arena-emu: empty has no programs\n")
    assert run(capsys, "run", str(src), "--prog", "x")[::2] == (2, "arena-emu: empty has no programs\n")
    assert run(capsys, "prog", "dump", "xlated", str(src))[::2] == (2, f"arena-emu: {src} has no programs\n")


def test_a_debug_script_that_is_not_utf8_is_a_one_line_error(capsys, tmp_path):
    script = tmp_path / "cmds"
    script.write_bytes(b"\xff\xfe si\n")
    code, _, err = run(capsys, "debug", LIST, "--entry", "list_sum", "-x", str(script), "--batch")
    assert code == 2 and err.startswith(f"arena-emu: cannot read {script}: ") and err.count("\n") == 1


def test_run_loads_a_bpf_object_once_and_runs_its_programs_in_order(capsys):
    from bpf_build import build

    obj = str(build("arena_list"))
    code, out, _ = run(capsys, "run", obj, "--prog", "arena_list_add", "--prog", "arena_list_sum", "--json")
    add, total = json.loads(out)
    assert (code, add["entry"], add["ret"], total["entry"], total["status"]) == (
        0, "arena_list_add", 0, "arena_list_sum", "returned")
    code, _, err = run(capsys, "run", obj)
    assert (code, err) == (2, "arena-emu: arena_list has 2 programs: name one of arena_list_add, arena_list_sum\n")
    code, _, err = run(capsys, "run", obj, "--entry", "x")
    assert (code, err) == (2, "arena-emu: a BPF object's programs run with --prog (and --ctx), not --entry/--arg\n")


def test_a_bpf_objects_fault_names_its_c_line_on_the_command_line(capsys):
    from bpf_build import build

    code, out, _ = run(capsys, "run", str(build("stream")), "--json")
    doc = json.loads(out)
    (fault,) = doc["faults"]
    assert (code, fault["resolution"], fault["action"]) == (0, "extable", "skip")
    assert fault["source"].endswith("stream.bpf.c:32")
    assert doc["streams"]["stderr"].splitlines()[0].startswith("ERROR: Arena READ access at unmapped address 0x")


def test_build_and_run_take_a_bpf_c_file(capsys, tmp_path):
    src = str(Path(__file__).parent / "bpf_c" / "use_after_free.bpf.c")
    out = tmp_path / "uaf.bpf.o"
    assert run(capsys, "build", src, "-o", str(out))[:2] == (0, f"{out}\n") and out.is_file()
    code, text, _ = run(capsys, "run", src, "--json")
    doc = json.loads(text)
    assert (code, doc["entry"], doc["ret"], doc["faults"][0]["resolution"]) == (0, "use_after_free", 0, "extable")
    code, _, err = run(capsys, "build", src.replace(".bpf.c", ".S"))
    assert (code, err.startswith("arena-emu: cannot read")) == (2, True)


def test_run_gives_an_xdp_program_its_packet(capsys):
    from bpf_build import build

    code, out, _ = run(capsys, "run", str(build("xdp_parse")), "--data", "01 02 03 04", "--json")
    assert (code, json.loads(out)["ret"]) == (0, 2)


def test_a_bpf_compile_error_is_the_compilers_own_with_status_2(capsys, tmp_path):
    from bpf_build import build

    build("use_after_free")  # skips only if no compiler exists at all
    src = tmp_path / "bad.bpf.c"
    src.write_text('#include "bpf_arena_common.h"\n\nSEC("syscall")\nint bad(void *ctx)\n'
                   '{\n\treturn undefined_thing;\n}\n')
    for argv in (["build", str(src)], ["run", str(src)]):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (2, "")
        assert err.startswith("bad.bpf.c:6:9: error: use of undeclared identifier 'undefined_thing'\n"), err
        assert err.endswith("1 error generated.\n") and "Traceback" not in err
