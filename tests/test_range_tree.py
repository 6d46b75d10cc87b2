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
    fits = [(e - s, s) for s, e in runs if e - s >= want]
    found = tree.range_tree_find(want)
    if not fits:
        assert found is None
    else:  # best fit: the start of a smallest free run that holds `want` pages
        assert (dict((s, e - s) for s, e in runs)[found], found) in fits
        assert dict((s, e - s) for s, e in runs)[found] == min(fits)[0]
    for p in range(0, N, 7):
        assert tree.is_range_tree_set(p, 3) == all(q in free for q in range(p, p + 3))


def test_best_fit_is_sequential_on_a_fresh_tree_then_fills_gaps_like_big_alloc2():
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


def test_of_equal_runs_the_one_inserted_last_is_found():
    """__range_size_insert() puts an equal size to the right; __find_range() keeps the last fit."""
    tree = RangeTree()
    tree.range_tree_set(10, 2)
    tree.range_tree_set(20, 2)
    tree.range_tree_set(0, 2)
    assert tree.range_tree_find(2) == 0
    tree.range_tree_clear(0, 2)
    assert tree.range_tree_find(1) == 20
    tree.range_tree_clear(20, 1)  # [21, 22) is inserted anew: now the newest, and the smallest
    tree.range_tree_set(5, 1)
    assert tree.range_tree_find(1) == 5
    assert tree.range_tree_find(2) == 10
