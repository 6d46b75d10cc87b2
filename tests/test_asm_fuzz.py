"""Fuzzed assembly through `Machine().load_source()`: an image, or an AsmError/EmuError whose every
diagnostic is one line; never another exception, a crash or a hang (issue 22).

keystone runs in-process and hangs inside C, where no Python signal reaches it, so each example
runs in a worker process that the test kills when it takes too long.
"""

import json
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
FILES = {p.name: p.read_text() for d in ("kernel_stubs", "bpf_progs") for p in sorted((ROOT / d).glob("*.S"))}
CORPUS = sorted({line for text in FILES.values() for line in text.splitlines() if line.strip()})
TIMEOUT = 20  # seconds: an example takes milliseconds; keystone, once hung, never returns

_WORKER = r"""
import json, sys, traceback
from emu.errors import AsmError, EmuError
from emu.machine import Machine
for line in sys.stdin:
    m = Machine()
    try:
        m.load_source(json.loads(line), "fuzz.S")
        out = {"image": True}
    except AsmError as e:
        out = {"diagnostics": [str(d) for d in e.diagnostics]}
    except EmuError as e:
        out = {"diagnostics": [str(e)], "emu": True}
    except Exception:
        out = {"exception": traceback.format_exc()}
    m.close()
    print(json.dumps(out), flush=True)
"""


class Worker:
    """One process that loads sources; restarted after a hang or a crash."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def run(self, source: str) -> dict:
        if self.proc is None:
            self.proc = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        self.proc.stdin.write(json.dumps(source) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        reply = self.proc.stdout.readline() if ready else ""
        if reply:
            return json.loads(reply)
        self.stop()
        return {"exception": f"the worker {'crashed' if ready else f'hung for {TIMEOUT} s'}"}

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.stop()


NASTY = st.sampled_from(["\r", "\x00", "\x01", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85", "\u2028", "\ufeff",
                         "é", "€", "ℝ", '"', "'", "\\", ";", "#", "/*", "*/", ",", "(", ")", "$", "%", "[", "]",
                         ":", "=", "{", "}", "`", "@", "*", "\t", " ", "\r\n", ",\r", ", ;"])
HUGE = st.sampled_from(["9" * 5000, "0x" + "f" * 40, "18446744073709551616", "4294967296", "65536", "256",
                        "12186215394520598", "-2147483649", "0x80000000", "0b" + "1" * 70, "0" + "7" * 30,
                        "(" * 2000 + "1" + ")" * 2000, "-" * 3000 + "1", "~" * 1000 + "0",
                        "1 << 64", "-7 % 2", "1 / 0", "0x7fffffffffffffff * 0x7fffffffffffffff"])


INTEL = ["mov rax, qword ptr [rdi + 0x10]", "add rax, 8", "lea rax, [rip + f]", "mov qword ptr [rdi+rcx*8-16], 1",
         "mov eax, dword ptr fs:[0x28]", "movabs rax, 0x1234", "f: ret", "call f", "jmp 1f", "1: nop"]


@st.composite
def mutated(draw, line=None, corpus=CORPUS):
    """A corpus line with a few insertions, deletions and numbers swapped for hostile ones."""
    line = line if line is not None else draw(st.sampled_from(corpus))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["insert", "number", "delete"]))
        pos = draw(st.integers(0, len(line)))
        numbers = list(re.finditer(r"\d+", line))
        if kind == "number" and numbers:
            m = numbers[draw(st.integers(0, len(numbers) - 1))]
            line = line[:m.start()] + draw(HUGE) + line[m.end():]
        elif kind == "delete":
            line = line[:pos] + line[pos + draw(st.integers(1, 4)):]
        else:
            line = line[:pos] + draw(st.one_of(NASTY, HUGE)) + line[pos:]
    return line


@st.composite
def mutated_file(draw):
    """A whole shipped file with one line mutated, so that links that succeed are fuzzed too."""
    lines = FILES[draw(st.sampled_from(sorted(FILES)))].splitlines()
    i = draw(st.integers(0, len(lines) - 1))
    return "\n".join(lines[:i] + [draw(mutated(lines[i]))] + lines[i + 1:])


LINES = st.one_of(mutated(), st.sampled_from(CORPUS), st.text(max_size=40),
                  st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40))
INTEL_LINES = st.one_of(mutated(corpus=INTEL), st.sampled_from(INTEL))
SOURCES = st.one_of(st.lists(LINES, min_size=1, max_size=6).map("\n".join), mutated_file(),
                    st.lists(INTEL_LINES, min_size=1, max_size=6).map(lambda ls: "\n".join([".intel_syntax", *ls])))
DIAGNOSTIC = re.compile(r"fuzz\.S:\d+: error: \S")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(SOURCES)
def test_fuzzed_sources_load_or_fail_with_one_line_diagnostics(worker, source):
    out = worker.run(source)
    assert "exception" not in out, out["exception"]
    for d in out.get("diagnostics", []):
        assert len(d.splitlines()) == 1, d
        assert out.get("emu") or DIAGNOSTIC.match(d), d


# Each hangs keystone 0.9.2 when handed to it as it is (found by putting every ASCII character at
# every place of a few instructions): a character before the mnemonic, `=` or `:` right after it,
# a `\r` or `;` where keystone starts a new statement, a `{`.
KEYSTONE_HANGS = ["xor %r8d,\r%r8d", "xor %r8d, \r%r8d", "lea -0x8(%rbp,\r%rcx,8), %rax", "call *\r%rax",
                  "!mov 0x10(%rdi), %rax", "(xor %r8d, %r8d", "\\mov 0x10(%rdi), %rax", "mov= 0x10(%rdi), %rax",
                  "x=or %r8d, %r8d", "xor: %r8d, %r8d", "xor :%r8d, %r8d", "mov 0x10(%rdi),; %rax",
                  "mov %gs{:0x10, %rax", ".intel_syntax noprefix\nmov rax, qword ptr [rdi + 0x10{]",
                  ".intel_syntax noprefix\nmov rax, qword ptr [rdi\r + 0x10]",
                  ".intel_syntax noprefix\nmov rax, qword ptr; [rdi + 0x10]"]


@pytest.mark.parametrize("source", KEYSTONE_HANGS)
def test_what_hangs_keystone_never_reaches_it(worker, source):
    out = worker.run(source)
    assert "exception" not in out, out["exception"]


def test_the_worker_reports_a_hang_instead_of_hanging(monkeypatch):
    """The guard itself: a worker that never answers is killed and reported."""
    monkeypatch.setattr(sys.modules[__name__], "TIMEOUT", 1)
    monkeypatch.setattr(sys.modules[__name__], "_WORKER", "import time\ntime.sleep(60)\n")
    w = Worker()
    assert w.run("nop") == {"exception": "the worker hung for 1 s"}
    assert w.proc is None
