"""pytest support: the plugin (emu.testing.plugin) and one-line fault assertions (emu.testing.asserts).

The assertions are imported on first use, not with this package: the plugin
lives inside it, and pytest can rewrite the assertions' `assert`s only if they
are imported after the plugin registers them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .asserts import (
        assert_fault_at,
        assert_fixed_up,
        assert_no_fault,
        assert_oops,
        assert_reported_once,
        assert_restarted,
        assert_text_matches,
        assert_write_lost,
        text_matches,
    )

__all__ = ["assert_fault_at", "assert_fixed_up", "assert_no_fault", "assert_oops", "assert_reported_once",
           "assert_restarted", "assert_text_matches", "assert_write_lost", "text_matches"]


def __getattr__(name: str) -> object:
    if name in __all__:
        return getattr(importlib.import_module(".asserts", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
