"""Differential test: random programs on the JIT (bare Unicorn) and on the reference interpreter agree.

Programs are straight-line code with forward branches, bounded loops and
bpf-to-bpf calls over every ALU, jump, load, store and atomic form, through
normal pointers, the stack and the arena, faulting arena accesses included.
Registers start from edge-heavy 64-bit values; at the end every register is
stored into memory, so r0 and the whole buffer are compared.
"""

from bpf_asm import assemble
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jit_runner import run_interp, run_jit

DATA = 64  # random bytes the program reads and writes; the register dump follows
REGS = [0, 2, 3, 4, 5, 6, 7, 8, 9]
EDGES = [0, 1, -1, 2, -2, 31, 32, 63, 64, 0x7FFF_FFFF, -0x8000_0000, 0xFFFF_FFFF, 0x8000_0000, -(1 << 63),
         (1 << 63) - 1, 0x1_0000_0000]

values = st.one_of(st.sampled_from(EDGES), st.integers(-(1 << 63), (1 << 64) - 1))
imm32 = st.one_of(st.sampled_from([e for e in EDGES if -(1 << 31) <= e < (1 << 31)]),
                  st.integers(-(1 << 31), (1 << 31) - 1))
reg = st.sampled_from(REGS)

ALU = ["add", "sub", "mul", "div", "sdiv", "mod", "smod", "or", "and", "xor", "lsh", "rsh", "arsh", "mov"]
JMP = ["jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset"]
SIZE = {"b": 1, "h": 2, "w": 4, "dw": 8}


def _r(n: int) -> str:
    return f"%r{n}"


@st.composite
def alu(draw, avoid=()):
    dst = draw(st.sampled_from([r for r in REGS if r not in avoid]))
    kind = draw(st.sampled_from(["op", "op", "op", "neg", "movsx", "end"]))
    suffix = draw(st.sampled_from(["", "32"]))
    if kind == "neg":
        return [f"neg{suffix} {_r(dst)}"]
    if kind == "end":
        return [f"{draw(st.sampled_from(['le', 'be', 'swap']))}{draw(st.sampled_from([16, 32, 64]))} {_r(dst)}"]
    if kind == "movsx":
        width = draw(st.sampled_from(["8", "16", "32", "8_32", "16_32"]))
        return [f"movsx{width} {_r(dst)}, {_r(draw(reg))}"]
    op = draw(st.sampled_from(ALU))
    counts = st.one_of(st.sampled_from([0, 1, 2, 7, 31, 32, 33, 63, 64]), st.integers(0, 255))
    shift = counts if op.endswith("sh") else imm32
    operand = _r(draw(reg)) if draw(st.booleans()) else str(draw(shift))
    return [f"{op}{suffix} {_r(dst)}, {operand}"]


@st.composite
def mem(draw):
    size = draw(st.sampled_from(list(SIZE)))
    where = draw(st.sampled_from(["r1", "stack", "arena", "arena", "fault"]))
    kind = draw(st.sampled_from(["ldx", "ldxsx", "st", "stx", "lock", "ldacq", "strel"]))
    if kind == "ldacq" and where == "fault":
        kind = "ldx"  # the kernel reports a faulting arena load-acquire through dst: not the interpreter's model
    if kind == "ldxsx" and size == "dw":
        kind = "ldx"
    if kind == "lock" and size in ("b", "h"):
        size = "w"
    span = 64 if where == "stack" else DATA
    off = draw(st.integers(0, span // SIZE[size] - 1)) * SIZE[size]
    pre, suffix = [], ""
    if where == "r1":
        base = "[%r1+" + str(off) + "]"
    elif where == "stack":
        base = f"[%r10-{off + SIZE[size]}]"
    elif where == "arena":
        pre, suffix, base = ["mov32 %r9, %r1"], ".a", f"[%r9+{off}]"
    else:  # an arena page nobody mapped: ex_handler_bpf() skips the access, a load's destination is cleared
        pre, suffix, base = [f"mov32 %r9, {draw(st.integers(0, 0xEFFF))}"], ".a", f"[%r9+{off}]"
    if kind == "ldx":
        return pre + [f"ldx{size}{suffix} {_r(draw(reg))}, {base}"]
    if kind == "ldxsx":
        return pre + [f"ldx{size}sx{suffix} {_r(draw(reg))}, {base}"]
    if kind == "ldacq":
        return pre + [f"ldacq{size}{suffix} {_r(draw(reg))}, {base}"]
    if kind == "st":
        return pre + [f"st{size}{suffix} {base}, {draw(imm32)}"]
    src = draw(st.sampled_from(REGS if where in ("r1", "stack") else REGS[:-1]))  # r9 holds the arena address
    if kind in ("stx", "strel"):
        return pre + [f"{kind}{size}{suffix} {base}, {_r(src)}"]
    ops = ["add", "and", "or", "xor", "fetch_add", "xchg", "cmpxchg"]
    if where in ("r1", "stack"):
        ops += ["fetch_and", "fetch_or", "fetch_xor"]
    if where == "fault" and size == "w":
        ops.remove("cmpxchg")  # the verifier's zext of R0 after it still runs: not the interpreter's model
    lock = "lock32" if size == "w" else "lock"
    return pre + [f"{lock}{suffix} {draw(st.sampled_from(ops))} {base}, {_r(src)}"]


def jump(draw, label: str) -> list[str]:
    kind = draw(st.sampled_from(["cond", "cond", "cond", "ja", "gotol", "may_goto"]))
    if kind == "ja":
        return [f"ja {label}"]
    if kind == "gotol":
        return [f"gotol {label}"]
    if kind == "may_goto":
        return [f"may_goto {label}"]
    operand = _r(draw(reg)) if draw(st.booleans()) else str(draw(imm32))
    return [f"{draw(st.sampled_from(JMP))}{draw(st.sampled_from(['', '32']))} {_r(draw(reg))}, {operand}, {label}"]


def body(draw, prefix: str, calls: bool) -> list[str]:
    """Items of straight-line code: jumps only forward to a later item, loops around ALU items only."""
    lines: list[str] = []
    n = draw(st.integers(1, 25))
    pending: list[str] = []  # labels still to be placed, each at a later item
    kinds = ["alu", "alu", "alu", "mem", "mem", "jump", "loop"] + (["call"] if calls else [])
    for k in range(n):
        lines += [f"{label}:" for label in pending if label.endswith(f"_{k}")]
        pending = [label for label in pending if not label.endswith(f"_{k}")]
        kind = draw(st.sampled_from(kinds))
        if kind == "alu":
            lines += draw(alu())
        elif kind == "mem":
            lines += draw(mem())
        elif kind == "call":
            lines.append("call local sub")
        elif kind == "jump":
            label = f"{prefix}{k}_{draw(st.integers(k + 1, n))}"
            pending.append(label)
            lines += jump(draw, label)
        else:
            counter = draw(reg)
            lines += [f"mov32 {_r(counter)}, {draw(st.integers(1, 4))}", f"{prefix}loop{k}:"]
            for _ in range(draw(st.integers(1, 3))):
                lines += draw(alu(avoid=(counter,)))
            lines += [f"sub {_r(counter)}, 1", f"jne {_r(counter)}, 0, {prefix}loop{k}"]
    return lines + [f"{label}:" for label in pending]


@st.composite
def programs(draw):
    """A main program, and a subprogram it may call (its own frame, stack and callee-saved registers)."""
    lines = [f"lddw {_r(r)}, {draw(values) & ((1 << 64) - 1):#x}" for r in REGS]
    lines += body(draw, "M", calls=True)
    lines += [f"stxdw [%r1+{DATA + 8 * i}], {_r(r)}" for i, r in enumerate(REGS)]
    lines += ["exit", "sub:"] + body(draw, "S", calls=False) + ["exit"]
    return "\n".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.binary(min_size=DATA, max_size=DATA))
def test_jit_matches_the_interpreter(source, data):
    program = assemble(source)
    mem = data + bytes(8 * len(REGS))
    want = run_interp(program, mem)
    got = run_jit(program, mem)
    assert (got.r0, got.mem, got.faults) == (want.r0, want.mem, want.faults), source
