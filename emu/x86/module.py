"""x86-64 relocations of a loaded object, after arch/x86/kernel/module.c's apply_relocate_add().

The kernel code model (-mcmodel=kernel) needs only these: absolute 64-bit,
sign-extended 32-bit (the top 2 GiB), zero-extended 32-bit, and PC-relative
32-bit for calls and RIP-relative data. A value that does not fit is the
linker's "relocation truncated to fit" error; anything a GOT or PLT would
serve is refused, since the kernel links neither.
"""

from __future__ import annotations

from dataclasses import dataclass

R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_32, R_X86_64_32S, R_X86_64_PC64 = 1, 2, 4, 10, 11, 24

RELOC_NAMES = {
    0: "R_X86_64_NONE", 1: "R_X86_64_64", 2: "R_X86_64_PC32", 3: "R_X86_64_GOT32", 4: "R_X86_64_PLT32",
    5: "R_X86_64_COPY", 6: "R_X86_64_GLOB_DAT", 7: "R_X86_64_JUMP_SLOT", 8: "R_X86_64_RELATIVE",
    9: "R_X86_64_GOTPCREL", 10: "R_X86_64_32", 11: "R_X86_64_32S", 12: "R_X86_64_16", 13: "R_X86_64_PC16",
    14: "R_X86_64_8", 15: "R_X86_64_PC8", 16: "R_X86_64_DTPMOD64", 17: "R_X86_64_DTPOFF64",
    18: "R_X86_64_TPOFF64", 19: "R_X86_64_TLSGD", 20: "R_X86_64_TLSLD", 21: "R_X86_64_DTPOFF32",
    22: "R_X86_64_GOTTPOFF", 23: "R_X86_64_TPOFF32", 24: "R_X86_64_PC64", 25: "R_X86_64_GOTOFF64",
    26: "R_X86_64_GOTPC32", 41: "R_X86_64_GOTPCRELX", 42: "R_X86_64_REX_GOTPCRELX",
}
_GOT_OR_TLS = frozenset({3, 6, 7, 9, 16, 17, 18, 19, 20, 21, 22, 23, 25, 26, 41, 42})
_MASK64 = (1 << 64) - 1


class RelocationError(ValueError):
    """A relocation apply_relocate_add() refuses; the caller names the file and section.
    `overflow`: the type is fine, its value does not fit."""

    def __init__(self, message: str, overflow: bool = True):
        super().__init__(message)
        self.overflow = overflow


@dataclass(frozen=True)
class Reloc:
    offset: int  # in the section it patches
    type: int
    symbol: str
    addend: int

    @property
    def type_name(self) -> str:
        return RELOC_NAMES.get(self.type, f"relocation type {self.type}")


def apply_relocate_add(data: bytearray, base: int, reloc: Reloc, value: int) -> None:
    """Patch `data` (a section placed at `base`) for one relocation whose symbol is at `value`."""
    loc = base + reloc.offset
    val = value + reloc.addend
    if reloc.type == R_X86_64_64:
        size, out = 8, val & _MASK64
    elif reloc.type == R_X86_64_PC64:
        size, out = 8, (val - loc) & _MASK64
    elif reloc.type == R_X86_64_32:
        size, out = 4, val & _MASK64
        if out > 0xFFFF_FFFF:
            raise RelocationError(f"value {out:#x} does not fit in 32 bits, zero-extended")
    elif reloc.type == R_X86_64_32S:
        size, out = 4, _signed(val)
        if not -(1 << 31) <= out < 1 << 31:
            raise RelocationError(f"value {val & _MASK64:#x} does not fit in 32 bits, sign-extended")
    elif reloc.type in (R_X86_64_PC32, R_X86_64_PLT32):
        size, out = 4, _signed(val - loc)
        if not -(1 << 31) <= out < 1 << 31:
            raise RelocationError(f"{value & _MASK64:#x} is out of reach of a 32-bit PC-relative reference at {loc:#x}")
    elif reloc.type in _GOT_OR_TLS:
        raise RelocationError("not supported (build with -fno-pic)", overflow=False)
    else:
        raise RelocationError("not supported", overflow=False)
    if reloc.offset + size > len(data):
        raise RelocationError(f"offset {reloc.offset:#x} is past the end of the section")
    data[reloc.offset:reloc.offset + size] = (out & ((1 << 8 * size) - 1)).to_bytes(size, "little")


def _signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value
