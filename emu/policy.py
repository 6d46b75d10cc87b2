"""Which kernel a machine models for arena faults: a policy by name, and three knobs.

- `oops`: the kernel before the scratch series; a kernel fault on an unmapped arena page oopses.
- `map-always`: RFC patch 2/9 (BPF_F_ARENA_MAP_ALWAYS); every kernel PTE maps a per-arena
  garbage page, so nothing faults; allocation replaces it, free restores it.
- `scratch-v1`: dc11a4dba246 as first merged; the scratch page is installed and the
  instruction restarts; allocation over it fails (-EBUSY inside, NULL to the caller).
- `scratch` (default): with f64c723741c9; allocation replaces the scratch page: clear,
  flush_tlb_before_set() (a no-op on x86), set.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import EmuError

OOPS, MAP_ALWAYS, SCRATCH_V1, SCRATCH = "oops", "map-always", "scratch-v1", "scratch"
POLICIES = (OOPS, MAP_ALWAYS, SCRATCH_V1, SCRATCH)
DEFAULT_POLICY = SCRATCH

KNOBS = {
    "flush-on-replace": "flush every CPU's TLB when a real page replaces the scratch page (as arm64 does)",
    "flush-before-release": "flush the TLB before a freed range goes back to the allocator",
    "scratch-readonly": "map the scratch page read-only instead of writable",
}


@dataclass(frozen=True)
class Policy:
    name: str = DEFAULT_POLICY
    flush_on_replace: bool = False
    flush_before_release: bool = False
    scratch_readonly: bool = False

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise EmuError(f"unknown policy '{self.name}': the policies are {', '.join(POLICIES)}")

    @classmethod
    def parse(cls, name: str, knobs: list[str] | tuple[str, ...] = ()) -> Policy:
        for knob in knobs:
            if knob not in KNOBS:
                raise EmuError(f"unknown knob '{knob}': the knobs are {', '.join(KNOBS)}")
        return cls(name, **{k.replace("-", "_"): True for k in knobs})

    @property
    def scratch(self) -> bool:
        """bpf_arena_handle_page_fault() is in page_fault_oops()'s chain."""
        return self.name in (SCRATCH_V1, SCRATCH)

    @property
    def knobs(self) -> list[str]:
        return [f.name.replace("_", "-") for f in fields(self) if f.name != "name" and getattr(self, f.name)]

    def __str__(self) -> str:
        return "+".join([self.name, *self.knobs])
