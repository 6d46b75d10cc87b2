"""arena-emu: the BPF arena and its page-fault recovery, one instruction at a time."""

from .errors import AsmError, EmuError, SymbolError
from .kernel.events import FaultEvent
from .machine import CallResult, Machine

__version__ = "0.1.0"

__all__ = ["AsmError", "CallResult", "EmuError", "FaultEvent", "Machine", "SymbolError", "__version__"]
