"""RangeTree against a plain set of free pages: the kernel's range_tree semantics."""

from hypothesis import given, settings
from hypothesis import strategies as st

from emu.bpf.range_tree import RangeTree

N = 64


def model_free(ops):
    free = set()
    tree = RangeTree()
    for op, start, length in ops:
        if op == "set":
            tree.range_tree_set(start, length)
            free |= set(range(start, start + length))
        else:
            tree.range_tree_clear(start, length)
            free -= set(range(start, start + length))
    return tree, free


OPS = st.lists(st.tuples(st.sampled_from(["set", "clear"]), st.integers(0, N - 1), st.integers(1, 16)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(1, 20))
def test_runs_find_and_is_set_agree_with_a_set_of_free_pages(ops, want):
    tree, free = model_free(ops)
    runs = tree.runs()
    assert set().union(*(set(range(s, e)) for s, e in runs)) == free
    assert all(e1 < s2 for (_, e1), (s2, _) in zip(runs, runs[1:], strict=False))  # disjoint, merged
    first = next((p for p in range(N + 16) if all(q in free for q in range(p, p + want))), None)
    assert tree.range_tree_find(want) == first
    for p in range(0, N, 7):
        assert tree.is_range_tree_set(p, 3) == all(q in free for q in range(p, p + 3))


def test_first_fit_is_sequential_then_reuses_gaps_like_big_alloc2():
    tree = RangeTree()
    tree.range_tree_set(0, 100)
    got = []
    for _ in range(4):
        s = tree.range_tree_find(1)
        tree.range_tree_clear(s, 1)
        got.append(s)
    assert got == [0, 1, 2, 3]
    tree.range_tree_set(1, 1)
    assert tree.range_tree_find(1) == 1
    assert tree.range_tree_find(2) == 4
