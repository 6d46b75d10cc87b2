"""The C programs of tests/bpf_c/, built into BPF objects by `arena-emu build`'s compiler (emu.tools.build).

A test skips only when no compiler exists at all ($CLANG, clang 18+, or the ziglang package); a
$CLANG that does not run, or a program that does not compile, fails its test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emu.tools.build import BuildError, bpf_compiler, build_bpf

BPF_C = Path(__file__).parent / "bpf_c"


def build(name: str, *extra: str) -> Path:
    """tests/bpf_c/<name>.bpf.c compiled to an object (cached by content, flags and path)."""
    try:
        bpf_compiler()
    except BuildError as e:
        if "does not run" in str(e):
            pytest.fail(str(e), pytrace=False)
        pytest.skip(str(e))
    try:
        return build_bpf(BPF_C / f"{name}.bpf.c", extra=extra)
    except BuildError as e:
        pytest.fail(f"{name}.bpf.c does not compile:\n{e}", pytrace=False)


# The compiler whose code the tests with exact instruction texts expect (zig 0.15's clang); another clang may
# allocate registers or order instructions differently.
EXACT_CLANG = "clang version 22.1.8"


def build_exact(name: str) -> Path:
    """build(), for a test that expects EXACT_CLANG's instructions: skips under another compiler."""
    path = build(name)
    if bpf_compiler().version != EXACT_CLANG:
        pytest.skip(f"the expected texts are {EXACT_CLANG}'s code; this compiler is {bpf_compiler().version}")
    return path
