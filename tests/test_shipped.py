"""The BPF objects shipped in bpf_progs/ are what their C builds, and the demo and `compare` run them
with no compiler at all."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bpf_build import build

from emu.errors import EmuError
from emu.tools import shipped

ROOT = Path(__file__).resolve().parent.parent
PROGS = ROOT / "bpf_progs"


@pytest.fixture
def copy(tmp_path) -> Path:
    """A copy of bpf_progs/, beside which the objects can be broken."""
    return Path(shutil.copytree(PROGS, tmp_path / "bpf_progs"))


def test_every_program_in_c_ships_its_object_recorded_from_its_current_source():
    assert [p.name for p in shipped.sources()] == [
        "arena_alloc.bpf.c", "arena_atomics.bpf.c", "arena_kfunc.bpf.c", "arena_kfunc_c.bpf.c", "arena_list.bpf.c",
        "off_by_one.bpf.c", "scratch.bpf.c", "smp.bpf.c", "stream.bpf.c"]
    assert shipped.stale_without_compiler(PROGS) == []


def test_an_edited_source_a_missing_object_and_an_edited_object_are_each_named(copy):
    src = copy / "scratch.bpf.c"
    src.write_text(src.read_text().replace("return 1;", "return 2;", 1))
    (copy / "stream.bpf.o").unlink()
    data = bytearray((copy / "smp.bpf.o").read_bytes())
    data[-1] ^= 1
    (copy / "smp.bpf.o").write_bytes(bytes(data))
    assert shipped.stale_without_compiler(copy) == [
        f"{copy}/scratch.bpf.o: stale, scratch.bpf.c or bpf_arena_common.h changed since it was built",
        f"{copy}/smp.bpf.o: not the object objects.json records (rebuild, do not edit it)",
        f"{copy}/stream.bpf.o: not built"]


def test_objects_built_with_other_flags_are_stale(copy):
    manifest = json.loads((copy / "objects.json").read_text())
    manifest["scratch.bpf.o"]["flags"] = ["-c", "-O1"]
    (copy / "objects.json").write_text(json.dumps(manifest))
    assert shipped.stale_without_compiler(copy) == [
        f"{copy}/scratch.bpf.o: stale, built with -c -O1, the flags are now -c -O2 -g -mcpu=v3"]


def test_the_same_compiler_builds_the_shipped_bytes():
    """Fails naming each stale object when this machine's compiler is the one recorded; objects from
    another clang version are only rebuilt (their C must still compile)."""
    build("use_after_free")  # skips only if no compiler exists at all
    assert shipped.stale_against_compiler(PROGS) == []


def test_an_object_the_recorded_compiler_no_longer_builds_is_named_with_its_sections(copy):
    build("use_after_free")
    compiler = shipped.compiler_identity(shipped.bpf_compiler())
    manifest = json.loads((copy / "objects.json").read_text())
    manifest["scratch.bpf.o"]["compiler"] = compiler  # as if this compiler had built what follows
    (copy / "objects.json").write_text(json.dumps(manifest))
    src = copy / "scratch.bpf.c"
    original = src.read_text()
    src.write_text(original.replace("*val = 1;", "*val = 2;"))
    shipped.build(src, copy / "scratch.bpf.o")
    src.write_text(original)
    (problem,) = shipped.stale_against_compiler(copy)
    assert problem.startswith(f"{copy}/scratch.bpf.o: stale, {compiler} now builds other bytes in ")
    assert "syscall" in problem.split(" in ", 1)[1].split(", ")


def test_demo_and_compare_run_the_shipped_objects_with_no_compiler(tmp_path):
    """$CLANG names no program and PATH holds none: a build would fail with '$CLANG=... does not run'."""
    env = {**os.environ, "CLANG": "/nonexistent/clang", "PATH": "/nonexistent", "PYTHONPATH": str(ROOT)}
    demo = subprocess.run([sys.executable, "-m", "emu", "demo"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert demo.returncode == 0, demo.stderr
    assert "  return bpf_kfunc_arena_read_u64((__u64 *)(val + PAGE_SIZE / sizeof(*val))); @ scratch.bpf.c:44\n" \
        in demo.stdout
    compare = subprocess.run([sys.executable, "-m", "emu", "compare", "--policy", "scratch"], capture_output=True,
                             text=True, env=env, cwd=tmp_path, timeout=120)
    assert compare.returncode == 0, compare.stderr
    assert "lost-write                 write lost, 2 reports" in compare.stdout


def test_a_removed_source_and_a_broken_manifest_are_named(copy):
    (copy / "smp.bpf.c").unlink()
    assert shipped.stale_without_compiler(copy) == [f"{copy}/smp.bpf.o: in objects.json but its source is gone"]
    (copy / "objects.json").write_text("[1]")
    with pytest.raises(EmuError, match=rf"^cannot read {copy}/objects.json: "):
        shipped.stale_without_compiler(copy)
