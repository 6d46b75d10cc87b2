"""What a SEC() name makes of a program: its type and whether it may sleep (libbpf's section_defs[]).

A name ending in `+` in the table matches that name exactly or followed by `/...`
(sec_def_matches()); no two entries match the same name, so their order does not matter. A
section the table does not know leaves the type to the user, as libbpf does.
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


# The types whose bpf_prog_ops have no .test_run (kprobe_prog_ops, tracepoint_prog_ops, perf_event_prog_ops,
# lsm_prog_ops, freplace's): bpf_prog_test_run() refuses them with -ENOTSUPP.
NO_TEST_RUN = frozenset({ProgType.KPROBE, ProgType.TRACEPOINT, ProgType.PERF_EVENT, ProgType.LSM, ProgType.EXT})
_TRACING_TEST_RUN = ("fentry", "fexit", "fmod_ret")


@dataclass(frozen=True)
class SecDef:
    sec: str
    prog_type: ProgType
    sleepable: bool


_BY_TYPE = (
    (ProgType.SOCKET_FILTER, "socket"),
    (ProgType.KPROBE, "kprobe+ kretprobe+ uprobe+ uretprobe+ uprobe.s+"),
    (ProgType.SCHED_CLS, "tc/ingress tc/egress tcx/ingress tcx/egress tc classifier"),
    (ProgType.SCHED_ACT, "action"),
    (ProgType.TRACEPOINT, "tracepoint+ tp+"),
    (ProgType.RAW_TRACEPOINT, "raw_tracepoint+ raw_tp+"),
    (ProgType.TRACING, "tp_btf+ fentry+ fmod_ret+ fexit+ fentry.s+ fmod_ret.s+ fexit.s+ iter+ iter.s+"),
    (ProgType.EXT, "freplace+"),
    (ProgType.LSM, "lsm+ lsm.s+"),
    (ProgType.SYSCALL, "syscall"),
    (ProgType.XDP, "xdp.frags xdp"),
    (ProgType.PERF_EVENT, "perf_event"),
    (ProgType.STRUCT_OPS, "struct_ops+ struct_ops.s+"),
    (ProgType.SK_LOOKUP, "sk_lookup"),
    (ProgType.NETFILTER, "netfilter"),
)
# SEC_SLEEPABLE: the `.s` variants, and syscall programs
SECTION_DEFS = tuple(SecDef(sec, prog_type, sec.endswith(".s+") or sec == "syscall")
                     for prog_type, secs in _BY_TYPE for sec in secs.split())


def sec_def_matches(sec_def: SecDef, sec_name: str) -> bool:
    """sec_def_matches(): exact, or for a `type+` entry also `type/extras`."""
    if sec_def.sec.endswith("+"):
        stem = sec_def.sec[:-1]
        return sec_name == stem or sec_name.startswith(stem + "/")
    return sec_name == sec_def.sec


def find_sec_def(sec_name: str) -> SecDef | None:
    """find_sec_def(): the first entry that matches."""
    return next((d for d in SECTION_DEFS if sec_def_matches(d, sec_name)), None)


def has_test_run(prog_type: ProgType | None, sec_name: str) -> bool:
    """Whether bpf_prog_test_run() runs this program rather than refuse it with -ENOTSUPP: not for the types in
    NO_TEST_RUN, and of the tracing programs only fentry, fexit and fmod_ret (bpf_prog_test_run_tracing())."""
    if prog_type in NO_TEST_RUN:
        return False
    if prog_type == ProgType.TRACING:
        sec_def = find_sec_def(sec_name)
        return sec_def is not None and sec_def.sec.removesuffix("+").removesuffix(".s") in _TRACING_TEST_RUN
    return True
