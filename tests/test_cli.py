"""The arena-emu command: what a user types, what a script reads."""

import json
import subprocess
import sys

import pytest

from emu.corpus import bpf_prog, stub
from emu.tools.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_prints_the_return_value(capsys):
    code, out, _ = run(capsys, "run", stub("list.S"), "--entry", "list_sum", "--arg", "demo_list")
    assert code == 0
    assert out.splitlines() == ["call list_sum(0xffffffff82800000)",
                                "returned 0x3c (60) after 23 instructions, 0 fault(s)"]


def test_run_json_has_status_ret_faults_and_oops(capsys):
    code, out, _ = run(capsys, "run", stub("maccess.S"), "--entry", "copy_from_kernel_nofault",
                       "--map", "0xffffc90020000000", "--arg", "0xffffc90020000000", "--arg", "0xffffc90040000000",
                       "--arg", "8", "--json")
    doc = json.loads(out)
    assert code == 0
    assert (doc["status"], doc["ret_signed"], doc["oops"]) == ("returned", -14, None)
    (f,) = doc["faults"]
    assert (f["address"], f["access"], f["error_code"], f["resolution"], f["action"]) == (
        "0xffffc90040000000", "read", "0x0", "extable", "fixup")


def test_an_oops_exits_1_and_prints_the_report(capsys):
    code, out, _ = run(capsys, "run", stub("list.S"), "--entry", "list_count", "--arg", "0")
    assert code == 1
    assert "BUG: kernel NULL pointer dereference, address: 0000000000000000" in out
    assert out.rstrip().endswith("oops after 4 instructions")


def test_the_budget_exits_3(capsys, tmp_path):
    f = tmp_path / "spin.S"
    f.write_text("SYM_FUNC_START(spin)\n1: jmp 1b\n")
    code, out, _ = run(capsys, "run", str(f), "--entry", "spin", "--budget", "1000", "--json")
    assert (code, json.loads(out)["status"], json.loads(out)["insns"]) == (3, "budget", 1000)


def test_bad_assembly_is_file_line_message_and_exit_2(capsys, tmp_path):
    f = tmp_path / "bad.S"
    f.write_text("nop\nfrobnicate %rax\n")
    code, out, err = run(capsys, "run", str(f), "--entry", "x")
    assert (code, out) == (2, "")
    assert err == f"{f}:2: error: no such instruction: 'frobnicate %rax'\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["--entry", "nosuch"], 'arena-emu: no symbol "nosuch" in the loaded files\n'),
    (["--entry", "list_sum", "--arg", "bogus"], "arena-emu: --arg bogus: undefined symbol 'bogus'\n"),
    (["--entry", "list_sum", "--map", "zz"], "arena-emu: --map takes ADDR[,SIZE], not 'zz'\n"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, _, err = run(capsys, "run", stub("list.S"), *argv)
    assert (code, err) == (2, message)


def test_errors_under_json_are_json(capsys):
    code, out, _ = run(capsys, "run", "/nonexistent.S", "--entry", "x", "--json")
    assert code == 2
    assert json.loads(out) == {"status": "error", "error": "cannot read /nonexistent.S: No such file or directory"}


@pytest.mark.parametrize("argv", [["run", "x.S"], ["run", "x.S", "--entry", "f", "--budget", "-1"],
                                  ["run", "x.S", "--entry", "f", "--ram", "100"], ["frob"]])
def test_invalid_arguments_get_usage_and_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "usage: arena-emu" in capsys.readouterr().err


def test_demo_runs_as_an_installed_command():
    proc = subprocess.run([sys.executable, "-m", "emu.tools.cli", "demo"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "bpf_arena_handle_page_fault(0xffffc90036209000, read) handled it" in proc.stdout
    assert "BUG: unable to handle page fault for address: ffffc90036209000" in proc.stdout


UVM = 0x7F7D_2620_0000


@pytest.mark.parametrize(("file", "entry", "status", "ret", "faults", "reported"), [
    ("stream.S", "stream_arena_read_fault", "returned", 0, [("read", "rax")], [("READ", UVM + 0x7FFF)]),
    ("stream.S", "stream_arena_write_fault", "returned", 0, [("write", None)], [("WRITE", UVM + 0x7FFF)]),
    ("stream.S", "stream_arena_subprog_fault", "returned", 0, [("write", None)],
     [("WRITE", 0x7F7D_DEAD_BEEF)]),
    ("arena_alloc.bpf.o", "alloc_write_free_read", "returned", 42 << 32, [("read", "rdi")],
     [("READ", 0xFFFF_E000)]),
    ("arena_alloc.bpf.o", "two_pages_and_outside", "returned", 0x0201_0000,
     [("write", None), ("write", None), ("read", "rsi"), ("read", "rax")],
     [("WRITE", 0xFFFF_DFFC), ("WRITE", 1 << 32), ("READ", 0xFFFF_DFFC), ("READ", 1 << 32)]),
    ("arena_list.S", "arena_list_build", "returned", UVM, [], []),
    ("arena_atomics.bpf.o", "atomic_add_unallocated", "returned", 7, [("write", None)], [("WRITE", UVM + 0x5000)]),
    ("arena_atomics.bpf.o", "atomic_xadd_unallocated", "returned", 7, [("write", None)], [("WRITE", UVM + 0x5008)]),
    ("arena_kfunc.bpf.o", "kfunc_read_allocated", "returned", 0x1234, [], []),
    ("arena_kfunc.bpf.o", "kfunc_read_unallocated", "oops", None, [("read", None)], []),
])
def test_run_json_shows_each_bpf_program_as_the_kernel_would(capsys, file, entry, status, ret, faults, reported):
    if file.endswith(".bpf.o"):  # a test run of the program, its kfuncs loaded first
        argv = [stub("arena_kfuncs.S"), bpf_prog(file), "--prog", entry]
    else:  # a call of the JIT-style function with a register argument
        argv = [bpf_prog(file), "--entry", entry, "--arg", "5"]
    code, out, _ = run(capsys, "run", *argv, "--json", "--policy", "oops")
    doc = json.loads(out)
    assert code == (0 if status == "returned" else 1)
    assert (doc["status"], doc["ret"]) == (status, ret)
    assert [(f["access"], f["cleared"]) for f in doc["faults"]] == faults
    for f in doc["faults"]:
        assert (f["resolution"], f["action"]) == (("extable", "skip") if status == "returned" else ("oops", "stop"))
    errors = [line for line in doc["streams"]["stderr"].splitlines() if line.startswith("ERROR")]
    assert errors == [f"ERROR: Arena {a} access at unmapped address {addr:#x}" for a, addr in reported]
    assert [f["stream"].splitlines()[0] for f in doc["faults"] if f["stream"]] == errors
    assert doc["streams"]["stdout"] == ""


def test_run_prints_the_bpf_streams_after_the_result(capsys):
    code, out, _ = run(capsys, "run", bpf_prog("stream.S"), "--entry", "stream_arena_read_fault")
    assert code == 0
    tail = out.split("--- BPF stderr ---\n", 1)[1]
    assert tail.startswith(f"ERROR: Arena READ access at unmapped address {UVM + 0x7FFF:#x}\n"
                           "CPU: 0 UID: 0 PID: 1 Comm: arena-emu\nCall trace:\n")


def test_compare_json_has_every_policy_for_the_scenarios_asked(capsys):
    code, out, _ = run(capsys, "compare", "--scenario", "lost-write", "--scenario", "lower-guard", "--json")
    doc = json.loads(out)
    assert code == 0
    assert [(d["scenario"], {p: (o["status"], o["ret"], o["reports"]) for p, o in d["outcomes"].items()})
            for d in doc] == [
        ("lost-write", {"oops": ("oops", None, 0), "map-always": ("returned", 0, 0),
                        "scratch-v1": ("returned", 7, 2), "scratch": ("returned", 7, 2)}),
        ("lower-guard", {"oops": ("oops", None, 0), "map-always": ("returned", 0, 0),
                         "scratch-v1": ("oops", None, 0), "scratch": ("oops", None, 0)})]


def test_compare_refuses_an_unknown_scenario(capsys):
    code, _, err = run(capsys, "compare", "--scenario", "nope")
    assert code == 2 and err.startswith("arena-emu: no scenario nope: there are alloc-over-scratch, ")


def test_run_takes_a_policy_and_knobs(capsys):
    args = ("run", bpf_prog("scratch.S"), "--entry", "lost_write", "--json")
    assert json.loads(run(capsys, *args)[1])["ret"] == 7
    assert json.loads(run(capsys, *args, "--knob", "flush-on-replace")[1])["ret"] == 0
    assert json.loads(run(capsys, *args, "--policy", "oops")[1])["status"] == "oops"


def test_an_unknown_policy_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", bpf_prog("scratch.S"), "--entry", "lost_write", "--policy", "lazy"])
    assert e.value.code == 2
    assert "invalid choice: 'lazy' (choose from 'oops', 'map-always', 'scratch-v1', 'scratch')" in \
        capsys.readouterr().err


def test_the_demo_shows_a_scratch_recovery_then_the_oops(capsys):
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert "handled it: arena_arg_unpopulated is on the stack" in out
    assert "  restart at 0xffffffff81000004: completed\n" in out
    assert "\n2. Policy `oops`" in out and "BUG: unable to handle page fault for address: ffffc90036209000" in out


def test_explore_groups_outcomes_and_replays_a_schedule(capsys):
    probe = "ARENA_KERN_VM_START + (ARENA_USER_VM_START & 0xffffffff) + 0x1000"
    code, out, _ = run(capsys, "explore", bpf_prog("smp.S"), "--entry0", "h3_alloc", "--entry1", "h3_reader",
                       "--probe", probe, "--bound", "1", "--workers", "1")
    assert code == 0
    assert out.splitlines()[0].endswith("distinct outcome(s):")
    assert "probe 0x0" in out and "replay: --schedule '" in out
    code, out, _ = run(capsys, "explore", bpf_prog("smp.S"), "--entry0", "h3_alloc", "--entry1", "h3_reader",
                       "--probe", probe, "--schedule", "1:@smp.S:34")
    assert out.splitlines()[-1] == ("schedule '1:@smp.S:34': cpu0 returned 0x7f7d26201000, cpu1 returned 0x0, "
                                    "1 report, probe 0x0")
