"""What a SEC() name makes of a program: its type and whether it may sleep (libbpf's section_defs[]).

A name ending in `+` in the table matches that name exactly or followed by `/...`
(sec_def_matches()). A section the table does not know leaves the type to the user, as libbpf does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ProgType(IntEnum):
    """enum bpf_prog_type, the ones a SEC() name can give."""

    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    RAW_TRACEPOINT = 17
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


@dataclass(frozen=True)
class SecDef:
    sec: str
    prog_type: ProgType
    sleepable: bool = False


SECTION_DEFS = (
    SecDef("socket", ProgType.SOCKET_FILTER),
    SecDef("kprobe+", ProgType.KPROBE),
    SecDef("kretprobe+", ProgType.KPROBE),
    SecDef("uprobe+", ProgType.KPROBE),
    SecDef("uretprobe+", ProgType.KPROBE),
    SecDef("uprobe.s+", ProgType.KPROBE, sleepable=True),
    SecDef("tc/ingress", ProgType.SCHED_CLS),
    SecDef("tc/egress", ProgType.SCHED_CLS),
    SecDef("tcx/ingress", ProgType.SCHED_CLS),
    SecDef("tcx/egress", ProgType.SCHED_CLS),
    SecDef("tc", ProgType.SCHED_CLS),
    SecDef("classifier", ProgType.SCHED_CLS),
    SecDef("action", ProgType.SCHED_ACT),
    SecDef("tracepoint+", ProgType.TRACEPOINT),
    SecDef("tp+", ProgType.TRACEPOINT),
    SecDef("raw_tracepoint+", ProgType.RAW_TRACEPOINT),
    SecDef("raw_tp+", ProgType.RAW_TRACEPOINT),
    SecDef("tp_btf+", ProgType.TRACING),
    SecDef("fentry+", ProgType.TRACING),
    SecDef("fmod_ret+", ProgType.TRACING),
    SecDef("fexit+", ProgType.TRACING),
    SecDef("fentry.s+", ProgType.TRACING, sleepable=True),
    SecDef("fmod_ret.s+", ProgType.TRACING, sleepable=True),
    SecDef("fexit.s+", ProgType.TRACING, sleepable=True),
    SecDef("freplace+", ProgType.EXT),
    SecDef("lsm+", ProgType.LSM),
    SecDef("lsm.s+", ProgType.LSM, sleepable=True),
    SecDef("iter+", ProgType.TRACING),
    SecDef("iter.s+", ProgType.TRACING, sleepable=True),
    SecDef("syscall", ProgType.SYSCALL, sleepable=True),
    SecDef("xdp.frags", ProgType.XDP),
    SecDef("xdp", ProgType.XDP),
    SecDef("perf_event", ProgType.PERF_EVENT),
    SecDef("struct_ops+", ProgType.STRUCT_OPS),
    SecDef("struct_ops.s+", ProgType.STRUCT_OPS, sleepable=True),
    SecDef("sk_lookup", ProgType.SK_LOOKUP),
    SecDef("netfilter", ProgType.NETFILTER),
)


def sec_def_matches(sec_def: SecDef, sec_name: str) -> bool:
    """sec_def_matches(): exact, or for a `type+` entry also `type/extras`."""
    if sec_def.sec.endswith("+"):
        stem = sec_def.sec[:-1]
        return sec_name == stem or sec_name.startswith(stem + "/")
    return sec_name == sec_def.sec


def find_sec_def(sec_name: str) -> SecDef | None:
    """find_sec_def(): the first entry that matches."""
    return next((d for d in SECTION_DEFS if sec_def_matches(d, sec_name)), None)
