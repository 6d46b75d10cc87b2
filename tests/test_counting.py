"""Which calls count their instructions, and how a call too long to count goes on uncounted."""

from emu import Machine

LOOP = "SYM_FUNC_START(loop)\n1: dec %rdi\n jnz 1b\n ret\nSYM_FUNC_END(loop)\n"


def test_a_counted_call_after_an_uncounted_one_counts_every_instruction():
    """Unicorn's count hook is only in code translated while it exists: code translated by an
    uncounted run must be translated again, or the next count would miss it."""
    with Machine() as m:
        m.load_source(LOOP, name="loop.S")
        assert m.call("loop", 1000, budget=50).insns == 50
        assert m.call("loop", 1000, budget=0).insns is None
        assert m.call("loop", 1000, budget=10**6).insns == 2001
        r = m.call("loop", 1000, budget=0)
        assert (r.status, r.insns) == ("returned", None)
        r = m.call("loop", 1000, budget=50)
        assert (r.status, r.insns) == ("budget", 50)
