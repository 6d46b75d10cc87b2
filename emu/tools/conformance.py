"""`arena-emu conformance-plugin`: the plugin protocol of the public BPF conformance suite.

The suite's runner (Alan-Jowett/bpf_conformance) starts the plugin once per test:
the program's bytes in hex on standard input, the test's memory in hex as the
one argument (if it has any). The plugin runs the program with r1 = the
memory's address and r2 = its length and prints r0 in hex; a program it refuses
gets a non-zero exit and one line saying why. Helper 5 is the suite's `unwind`.
"""

from __future__ import annotations

import re

from ..errors import EmuError
from ..machine import RETURNED, Machine

_HEX = re.compile(r"[0-9a-fA-F\s]*")


def parse_hex(text: str, what: str) -> bytes:
    """Bytes written as hex digits, any whitespace between them (the suite puts spaces)."""
    if not _HEX.fullmatch(text):
        raise EmuError(f"{what} is not hex bytes")
    digits = "".join(text.split())
    if len(digits) % 2:
        raise EmuError(f"{what} has an odd number of hex digits")
    return bytes.fromhex(digits)


def run_plugin(program_hex: str, memory_hex: str | None) -> int:
    """r0 of one conformance test; EmuError for a program refused or a run that did not return."""
    code = parse_hex(program_hex, "the program")
    memory = parse_hex(memory_hex, "the memory") if memory_hex else b""
    with Machine() as m:
        m.load_bpf_insns(code, "conformance", helpers="conformance")
        address = m.vmalloc(max(len(memory), 1)) if memory else 0
        if memory:
            m.write(address, memory)
        result = m.call("conformance", address, len(memory))
    if result.status != RETURNED or result.ret is None:
        raise EmuError((result.oops or "").split("\n", 1)[0] or result.error or result.status)
    return result.ret
