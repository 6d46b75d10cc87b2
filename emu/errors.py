"""Errors a user can cause. Each prints as one clear line; none is a traceback."""

from __future__ import annotations


class EmuError(Exception):
    """Base of every error arena-emu reports to a user."""


class SymbolError(EmuError):
    """A symbol that no loaded file defines."""


class Diagnostic:
    """One `file:line: error: message`, as an assembler prints it."""

    __slots__ = ("file", "line", "message")

    def __init__(self, file: str, line: int, message: str):
        self.file, self.line, self.message = file, line, message

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: error: {self.message}"

    def __repr__(self) -> str:
        return f"Diagnostic({str(self)!r})"


class AsmError(EmuError):
    """Bad assembly source: carries every diagnostic found, each `file:line: error: ...`."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))
