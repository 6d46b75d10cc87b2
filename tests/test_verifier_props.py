"""Property: a valid program without memory accesses comes back from bpf_check() unchanged."""

from bpf_asm import assemble
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_jit_diff import JMP, REGS, _r, alu, imm32, reg, values

from emu.bpf.insn import Insn, decode
from emu.bpf.verifier import ArenaInfo, ProgInfo, bpf_check


def _loop(draw, k: int) -> list[str]:
    """A counted loop around ALU items: a back-edge the verifier must accept without proving termination."""
    n = _r(draw(reg))
    body = [line for _ in range(draw(st.integers(1, 3))) for line in draw(alu(avoid=(int(n[2:]),)))]
    return [f"mov32 {n}, {draw(st.integers(1, 4))}", f"loop{k}:", *body, f"add {n}, -1", f"jsgt {n}, 0, loop{k}"]


@st.composite
def programs(draw):
    """Every register but the ctx (r1) set first, then ALU items, forward conditional jumps and may_goto (so that
    every instruction stays reachable), counted loops (back-edges), and an exit."""
    lines = [f"lddw {_r(r)}, {draw(values) & ((1 << 64) - 1):#x}" for r in REGS]
    n = draw(st.integers(1, 20))
    pending: list[str] = []
    for k in range(n):
        lines += [f"{label}:" for label in pending if label.endswith(f"_{k}")]
        pending = [label for label in pending if not label.endswith(f"_{k}")]
        kind = draw(st.sampled_from(["alu", "alu", "alu", "jump", "may_goto", "loop"]))
        if kind == "alu":
            lines += draw(alu())
        elif kind in ("jump", "may_goto"):
            label = f"L{k}_{draw(st.integers(k + 1, n))}"
            pending.append(label)
            operand = _r(draw(reg)) if draw(st.booleans()) else str(draw(imm32))
            op = f"{draw(st.sampled_from(JMP))}{draw(st.sampled_from(['', '32']))}"
            lines.append(f"may_goto {label}" if kind == "may_goto" else f"{op} {_r(draw(reg))}, {operand}, {label}")
        else:
            lines += _loop(draw, k)
    return "\n".join(lines + [f"{label}:" for label in pending] + ["exit"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_programs_without_memory_accesses_come_back_unchanged(text):
    insns = decode(assemble(text))
    v = bpf_check(insns, ProgInfo("prop"))
    assert list(v.insns) == insns
    assert v.stack_depths == (0,) and v.probe_count == 0 and v.subprog_starts == (0,)


SIZES = ["b", "h", "w", "dw"]
OFFSETS = st.integers(-64, 64)


@st.composite
def arena_access(draw):
    """One load, store or atomic through the arena pointer in r1, `{a}` where the probe suffix goes."""
    size, off, r = draw(st.sampled_from(SIZES)), draw(OFFSETS), _r(draw(reg))
    kind = draw(st.sampled_from(["ldx", "ldxsx", "st", "stx", "lock", "ldacq", "strel"]))
    if kind == "ldxsx" and size != "dw":
        return f"ldx{size}sx{{a}} {r}, [%r1{off:+d}]"
    if kind in ("ldx", "ldxsx"):
        return f"ldx{size}{{a}} {r}, [%r1{off:+d}]"
    if kind == "st":
        return f"st{size}{{a}} [%r1{off:+d}], {draw(imm32)}"
    if kind == "ldacq":
        return f"ldacq{size}{{a}} {r}, [%r1{off:+d}]"
    if kind in ("stx", "strel"):
        return f"{kind}{size}{{a}} [%r1{off:+d}], {r}"
    op = draw(st.sampled_from(["add", "and", "or", "xor", "fetch_add", "xchg", "cmpxchg"]))
    return f"lock{'32' if size in ('b', 'h', 'w') else ''}{{a}} {op} [%r1{off:+d}], {r}"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(arena_access(), alu().map("\n".join)), min_size=1, max_size=30))
def test_every_access_through_an_arena_pointer_becomes_its_probe_form(items):
    prefix = [f"mov {_r(r)}, 0" for r in REGS]
    text = "\n".join(prefix + ["cast_user %r1, %r1"] + items + ["exit"])
    insns = decode(assemble(text.replace("{a}", "")))
    insns[len(prefix)] = Insn(insns[len(prefix)].code, 1, 1, 1, 1)  # cast_kern, which bpf_asm does not spell
    expected = decode(assemble(text.replace("{a}", ".a").replace("cast_user %r1, %r1", "mov32 %r1, %r1")))
    v = bpf_check(insns, ProgInfo("prop", arena=ArenaInfo(0x7F00_0000_0000)))
    assert list(v.insns) == expected
    assert v.probe_count == sum("{a}" in item for item in items)
