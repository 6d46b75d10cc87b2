"""The README's examples are real: its Python runs, its transcript is the demo's output."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_python_examples_run(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    scripts = [b for b in BLOCKS if "def test_" not in b]
    assert scripts
    for block in scripts:
        exec(compile(block, "README.md", "exec"), {})


def test_pytest_examples_pass_under_the_plugin(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this tree's plugin, not an installed one
    suites = [b for b in BLOCKS if "def test_" in b]
    assert suites
    for i, block in enumerate(suites):
        pytester.makepyfile(**{f"test_readme_{i}": block})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_the_third_page_is_one_too_many PASSED*",
                                 "*test_a_kfunc_fault_is_recovered[[]scratch-v1[]] PASSED*",
                                 "*test_a_kfunc_fault_is_recovered[[]scratch[]] PASSED*"])


def test_the_demo_transcript_is_what_the_demo_prints():
    transcript = re.search(r"## The demo, as it prints.*?```\n(.*?)```", README, re.S).group(1)
    out = subprocess.run([sys.executable, "-m", "emu.tools.cli", "demo"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert transcript in out


def test_each_command_transcript_is_what_the_command_prints(monkeypatch):
    """A ```sh block of one `arena-emu` command followed by a ```text block: the text is in its output."""
    root = Path(__file__).resolve().parent.parent
    pairs = re.findall(r"```sh\n(arena-emu (?:run|compare|debug|explore|prog)[^\n]*)\n```\n```text\n(.*?)```",
                       README, re.S)
    assert {shlex.split(command)[1] for command, _ in pairs} == {"run", "compare", "debug", "explore", "prog"}
    for command, transcript in pairs:
        out = subprocess.run([sys.executable, "-m", "emu.tools.cli", *shlex.split(command)[1:]], capture_output=True,
                             text=True, timeout=60, cwd=root, env={**os.environ, "NO_COLOR": "1"}).stdout
        if ".bpf.c" in command:
            out, transcript = _code_layout_free(out), _code_layout_free(transcript)
        assert transcript in out, command


def _code_layout_free(text: str) -> str:
    """A command that builds C runs what this machine's clang emits, which another clang lays out
    differently: the JIT image's tag and offsets, kernel text addresses after it and instruction
    counts are left out of the comparison; the C lines, reports and fault handling are not."""
    text = re.sub(r"bpf_prog_[0-9a-f]{16}_(\w+)\+0x[0-9a-f]+/0x[0-9a-f]+", r"bpf_prog_<tag>_\1+<off>", text)
    text = re.sub(r"0xffffffff81[0-9a-f]{6}", "<text address>", text)
    return re.sub(r"after \d+ instructions", "after <n> instructions", text)


def test_each_c_program_shown_is_a_file_the_examples_build():
    shown = re.findall(r"```c\n(.*?)```", README, re.S)
    files = {f.read_text() for folder in (ROOT / "tests" / "bpf_c", ROOT / "bpf_progs") for f in folder.glob("*.bpf.c")}
    assert len(shown) == 2
    assert all(program in files for program in shown)
