"""Loaded BPF programs: kernel/bpf/core.c's view of them.

A program is a main program or one of its subprograms (callbacks are
subprograms too). Streams, the stream error count and the arena belong to the
main program, so a fault anywhere in its subprograms reports there
(`prog->aux->main_prog_aux->prog`).
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field

from .arena import Arena
from .insn import Insn
from .jit import JitImage
from .stream import BPF_PROG_STREAM_ERROR_CNT, BPF_STDERR, BPF_STDOUT, BpfStream

BPF_STREAM_READ_ALL = 1 << 31


@dataclass(eq=False)
class BpfProg:
    name: str
    start: int
    end: int
    tag: str  # stands in for the digest of the BPF instructions: sha1 of the JIT image
    main: BpfProg | None = None  # None: this is a main program
    arena: Arena | None = None
    streams: dict[int, BpfStream] = field(default_factory=lambda: {BPF_STDOUT: BpfStream(), BPF_STDERR: BpfStream()})
    stream_error_cnt: int = 0
    jited: JitImage | None = None  # a program JITed from bytecode: its instructions' x86 ranges, its extable
    insns: tuple[Insn, ...] = ()  # the whole program's bytecode as the JIT got it (indices as jited.insn_ranges')
    insn_texts: dict[int, str | None] = field(default_factory=dict)  # prog_info's texts by address, once each

    @property
    def main_prog(self) -> BpfProg:
        return self.main or self

    @property
    def ksym(self) -> str:
        """The name kallsyms shows for JITed code: bpf_prog_<tag>_<name>."""
        return f"bpf_prog_{self.tag}_{self.name}"

    def bpf_prog_stream_error_limit(self) -> bool:
        """bpf_prog_stream_error_limit(): true once BPF_PROG_STREAM_ERROR_CNT reports were attempted."""
        self.stream_error_cnt += 1
        return self.stream_error_cnt > BPF_PROG_STREAM_ERROR_CNT

    def stream_read(self, stream_id: int, length: int = BPF_STREAM_READ_ALL) -> bytes:
        """bpf_prog_stream_read(): destructive, like the BPF_PROG_STREAM_READ_BY_FD command."""
        return self.main_prog.streams[stream_id].bpf_stream_read(length)

    def __repr__(self) -> str:
        kind = "main" if self.main is None else f"subprog of {self.main.name}"
        return f"<BpfProg {self.name} ({kind}) {self.start:#x}-{self.end:#x}>"


def prog_tag(code: bytes) -> str:
    return hashlib.sha1(code).hexdigest()[:16]


class BpfProgs:
    """Every loaded program, found by address as bpf_prog_ksym_find() does."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._progs: list[BpfProg] = []
        self.by_name: dict[str, BpfProg] = {}

    def add(self, prog: BpfProg) -> None:
        i = bisect.bisect_left(self._starts, prog.start)
        self._starts.insert(i, prog.start)
        self._progs.insert(i, prog)
        self.by_name[prog.name] = prog

    def bpf_prog_ksym_find(self, ip: int) -> BpfProg | None:
        i = bisect.bisect_right(self._starts, ip) - 1
        if i >= 0 and self._progs[i].start <= ip < self._progs[i].end:
            return self._progs[i]
        return None

    def __iter__(self):
        return iter(self._progs)

    def __len__(self) -> int:
        return len(self._progs)
