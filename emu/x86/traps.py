"""x86 exception vectors and the #PF error code (arch/x86/include/asm/trap_pf.h, traps.c)."""

from __future__ import annotations

from dataclasses import dataclass

X86_TRAP_DE = 0
X86_TRAP_DB = 1
X86_TRAP_BP = 3
X86_TRAP_UD = 6
X86_TRAP_DF = 8
X86_TRAP_GP = 13
X86_TRAP_PF = 14

# The kernel's die() strings (arch/x86/kernel/traps.c DEFINE_IDTENTRY*).
TRAP_NAMES = {
    0: "divide error",
    1: "debug",
    3: "int3",
    4: "overflow",
    5: "bounds",
    6: "invalid opcode",
    7: "device not available",
    8: "double fault",
    10: "invalid TSS",
    11: "segment not present",
    12: "stack segment",
    13: "general protection fault",
    14: "page fault",
    16: "coprocessor error",
    17: "alignment check",
    19: "SIMD exception",
}

X86_PF_PROT = 1 << 0
X86_PF_WRITE = 1 << 1
X86_PF_USER = 1 << 2
X86_PF_RSVD = 1 << 3
X86_PF_INSTR = 1 << 4
X86_PF_PK = 1 << 5
X86_PF_SHSTK = 1 << 6
X86_PF_SGX = 1 << 15
X86_PF_RMP = 1 << 31


@dataclass(frozen=True)
class ErrorCode:
    """The hardware #PF error code, decoded with the kernel's words."""

    value: int

    @property
    def present(self) -> bool:
        return bool(self.value & X86_PF_PROT)

    @property
    def write(self) -> bool:
        return bool(self.value & X86_PF_WRITE)

    @property
    def user(self) -> bool:
        return bool(self.value & X86_PF_USER)

    @property
    def fetch(self) -> bool:
        return bool(self.value & X86_PF_INSTR)

    @property
    def access(self) -> str:
        """`read`, `write` or `fetch`."""
        return "fetch" if self.fetch else "write" if self.write else "read"

    @property
    def access_text(self) -> str:
        """show_fault_oops(): `instruction fetch`, `write access` or `read access`."""
        return {"fetch": "instruction fetch", "write": "write access", "read": "read access"}[self.access]

    @property
    def reason(self) -> str:
        """show_fault_oops()'s error_code(...) explanation."""
        if not self.value & X86_PF_PROT:
            return "not-present page"
        if self.value & X86_PF_RSVD:
            return "reserved bit violation"
        if self.value & X86_PF_PK:
            return "protection keys violation"
        if self.value & X86_PF_RMP:
            return "RMP violation"
        return "permissions violation"

    def describe(self) -> str:
        who = "user" if self.user else "supervisor"
        return f"{who} {self.access}, {self.reason}"

    def __str__(self) -> str:
        return f"{self.value:#06x} ({self.describe()})"

    def __repr__(self) -> str:
        return f"ErrorCode({self})"


_ERROR_CODES: dict[int, ErrorCode] = {}


def error_code(value: int) -> ErrorCode:
    """The ErrorCode of `value`, made once per value: it is frozen, and every fault needs one."""
    code = _ERROR_CODES.get(value)
    if code is None:
        code = _ERROR_CODES[value] = ErrorCode(value)
    return code
