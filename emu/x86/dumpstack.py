"""The oops report, in the kernel's words and layout.

show_fault_oops() (arch/x86/mm/fault.c), __die_header() and show_opcodes()
(arch/x86/kernel/dumpstack.c), __show_regs() (arch/x86/kernel/process_64.c).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..mm.layout import PAGE_SIZE
from .pgtable import PageWalk
from .traps import ErrorCode

UTS_RELEASE = "7.1.0-arena-emu"
OPCODE_BUFSIZE = 64  # show_opcodes(): 42 bytes before RIP, 22 from it
PROLOGUE_SIZE = 42


@dataclass(frozen=True)
class Regs:
    """A CPU's registers at a stop, as pt_regs plus the control registers."""

    rax: int
    rbx: int
    rcx: int
    rdx: int
    rsi: int
    rdi: int
    rbp: int
    rsp: int
    r8: int
    r9: int
    r10: int
    r11: int
    r12: int
    r13: int
    r14: int
    r15: int
    rip: int
    rflags: int
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    fs_base: int
    gs_base: int


def show_fault_oops(address: int, error_code: ErrorCode, user_mode: bool, walk: PageWalk) -> list[str]:
    lines = []
    if not user_mode and error_code.fetch and walk.leaf is not None and walk.leaf.entry >> 63:
        lines.append("kernel tried to execute NX-protected page - exploit attempt? (uid: 0)")
    if address < PAGE_SIZE and not user_mode:
        lines.append(f"BUG: kernel NULL pointer dereference, address: {address:016x}")
    else:
        lines.append(f"BUG: unable to handle page fault for address: {address:016x}")
    who = "user" if error_code.user else "supervisor"
    mode = "user" if user_mode else "kernel"
    lines.append(f"#PF: {who} {error_code.access_text} in {mode} mode")
    lines.append(f"#PF: error_code({error_code.value:#06x}) - {error_code.reason}")
    lines.append(walk.dump_pagetable() if walk.stages else "PGD 0")
    return lines


def die_header(what: str, err: int, counter: int) -> str:
    """__die_header(): since 2024 every die message starts with `Oops: `."""
    return f"Oops: {what}: {err:04x} [#{counter}] SMP PTI"


def show_opcodes(rip: int, code: bytes | None) -> str:
    """`Code:` with the byte at RIP in <>; `code` holds OPCODE_BUFSIZE bytes from rip - 42."""
    if code is None:
        return f"Code: Unable to access opcode bytes at {rip - PROLOGUE_SIZE:#x}."
    parts = [f"<{b:02x}>" if i == PROLOGUE_SIZE else f"{b:02x}" for i, b in enumerate(code)]
    return "Code: " + " ".join(parts)


def show_regs(r: Regs, where: str, code: bytes | None) -> list[str]:
    return [
        f"RIP: 0010:{where}",
        show_opcodes(r.rip, code),
        f"RSP: 0018:{r.rsp:016x} EFLAGS: {r.rflags:08x}",
        f"RAX: {r.rax:016x} RBX: {r.rbx:016x} RCX: {r.rcx:016x}",
        f"RDX: {r.rdx:016x} RSI: {r.rsi:016x} RDI: {r.rdi:016x}",
        f"RBP: {r.rbp:016x} R08: {r.r8:016x} R09: {r.r9:016x}",
        f"R10: {r.r10:016x} R11: {r.r11:016x} R12: {r.r12:016x}",
        f"R13: {r.r13:016x} R14: {r.r14:016x} R15: {r.r15:016x}",
        f"FS:  {r.fs_base:016x}(0000) GS:{r.gs_base:016x}(0000) knlGS:0000000000000000",
        f"CS:  0010 DS: 0000 ES: 0000 CR0: {r.cr0:016x}",
        f"CR2: {r.cr2:016x} CR3: {r.cr3:016x} CR4: {r.cr4:016x}",
    ]


def show_trace(frames: list[str]) -> list[str]:
    return ["Call Trace:", " <TASK>"] + [f" {f}" for f in frames] + [" </TASK>"]


def oops_report(*, head: list[str], what: str, err: int, counter: int, cpu: int, pid: int, comm: str,
                regs: Regs, where: str, code: bytes | None, frames: list[str], cr2: int) -> str:
    """The whole report, from the first BUG line to the end-of-trace marker."""
    lines = list(head)
    lines.append(die_header(what, err, counter))
    lines.append(f"CPU: {cpu} UID: 0 PID: {pid} Comm: {comm} Not tainted {UTS_RELEASE} #1")
    lines.append("Hardware name: arena-emu x86-64 (Unicorn)")
    lines += show_regs(regs, where, code)
    lines += show_trace(frames)
    lines.append("Modules linked in:")
    lines.append(f"CR2: {cr2:016x}")
    lines.append("---[ end trace 0000000000000000 ]---")
    return "\n".join(lines)
