"""cowstore.diff against a reference diff of the thawed plain data.

The reference (``reference``) walks two plain values: dicts key by key (a's
keys in order, then b's new ones), lists index by index, anything else a
leaf that changed when its type or value differs.  cowstore.diff must report
exactly its paths with the same old and new values, on heap versions that
share structure, on stored ones (an anonymous store, copies of a stored
version edited on the heap, and both committed), and in both directions.
The rules D1..D4 are csrc/python/diff.c's.
"""
import copy
import math
import pickle
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, note, strategies as st

import cowstore
from cowstore import (MISSING, Change, CowDict, CowList, CowSet, FrozenDict, FrozenList,
                      FrozenSet, freeze, thaw)
from test_differential import equal_twin, keys, nested_dicts, same, values


def reference(a, b, path=()):
    """(path, old, new) for every leaf path where plain values a and b differ."""
    if type(a) is dict and type(b) is dict:
        for k in list(a) + [k for k in b if k not in a]:
            if k in a and k in b:
                yield from reference(a[k], b[k], path + (k,))
            else:
                yield path + (k,), a.get(k, MISSING), b.get(k, MISSING)
    elif type(a) is list and type(b) is list:
        for i in range(max(len(a), len(b))):
            if i < len(a) and i < len(b):
                yield from reference(a[i], b[i], path + (i,))
            else:
                yield path + (i,), a[i] if i < len(a) else MISSING, b[i] if i < len(b) else MISSING
    elif type(a) is not type(b) or a != b:
        yield path, a, b


def assert_diff(changes, before, after):
    """changes (from cowstore.diff) are exactly reference(before, after)."""
    want = {path: (old, new) for path, old, new in reference(before, after)}
    got = {}
    for ch in changes:
        assert type(ch) is Change
        path = tuple(thaw(step) for step in ch.path)
        assert path not in got, f"{path!r} reported twice"
        got[path] = ch
    note(f"want {sorted(map(repr, want))}, got {sorted(map(repr, got))}")
    assert set(got) == set(want)
    for path, ch in got.items():
        for mine, theirs in ((ch.old, want[path][0]), (ch.new, want[path][1])):
            if theirs is MISSING:
                assert mine is MISSING
            else:
                assert mine is not MISSING and same(thaw(mine), theirs), (path, mine, theirs)


# ---- edits, replayed alike on a plain model and on cowstore versions ---------

def _is_dict(x):
    return isinstance(x, (dict, CowDict))


def _is_list(x):
    return isinstance(x, (list, CowList))


def targets(x):
    """Every dict and list in x, x first, in one order for plain and cowstore."""
    out = [x]
    for _, v in (list(x.items()) if _is_dict(x) else enumerate(x)):
        if _is_dict(v) or _is_list(v):
            out += targets(v)
    return out


edits = st.lists(st.tuples(st.integers(0, 50),                     # which container
                           st.sampled_from(["set", "del", "move", "rewrite", "retype",
                                            "append", "pop", "insert"]),
                           st.integers(0, 50), st.booleans(),       # which key / index
                           keys, values),
                 max_size=8)


def action(model, edit):
    """edit made concrete against the plain model: (container, op, args)."""
    where, op, pick, existing, new_key, value = edit
    ts = targets(model)
    n, t = where % len(ts), ts[where % len(ts)]
    if _is_dict(t):
        ks = list(t)
        k = ks[pick % len(ks)] if ks and (existing or op != "set") else new_key
        if op in ("set", "append", "insert"):
            return n, "setitem", (k, value)
        if k not in t:
            return None
        if op in ("del", "pop"):
            return n, "delitem", (k,)
        if op == "move":                            # to the end, a new entry
            return n, "move", (k, copy.deepcopy(t[k]))
        if op == "retype" and equal_twin(t[k]) is not None:
            return n, "setitem", (k, equal_twin(t[k]))
        return n, "setitem", (k, copy.deepcopy(t[k]))   # equal, freshly written
    i = pick % (len(t) + 1)
    if op == "append" or (op in ("set", "insert") and i == len(t)):
        return n, "append", (value,)
    if op == "insert":
        return n, "insert", (i, value)
    if not t:
        return None
    i %= len(t)
    if op == "pop":
        return n, "pop", ()
    if op in ("del", "move"):
        return n, "delitem", (i,)
    if op == "retype" and equal_twin(t[i]) is not None:
        return n, "setitem", (i, equal_twin(t[i]))
    return n, "setitem", (i, value if op == "set" else copy.deepcopy(t[i]))


def replay(root, act):
    n, op, args = act
    t = targets(root)[n]
    if op == "setitem":
        t[args[0]] = copy.deepcopy(args[1])
    elif op == "delitem":
        del t[args[0]]
    elif op == "move":
        del t[args[0]]
        t[args[0]] = copy.deepcopy(args[1])
    elif op == "append":
        t.append(copy.deepcopy(args[0]))
    elif op == "insert":
        t.insert(args[0], copy.deepcopy(args[1]))
    else:
        t.pop()


def edited(model, edit_list, *versions):
    """Applies edit_list to the plain model and to each cowstore version."""
    for edit in edit_list:
        act = action(model, edit)
        if act is not None:
            for root in (model, *versions):
                replay(root, act)


@pytest.fixture(scope="module")
def anon():
    with cowstore.open() as s:
        yield s


def check_all_backings(anon, start, edit_list):
    """Heap versions, then stored ones, against the reference."""
    before = copy.deepcopy(start)
    a = freeze(start)
    b = a.copy()
    model = copy.deepcopy(start)
    edited(model, edit_list, b)
    assert same(thaw(b), model)
    assert_diff(cowstore.diff(a, b), before, model)
    assert_diff(cowstore.diff(b, a), model, before)
    anon["a"] = a                       # a now reads from the store
    c = anon["a"].copy()                # stored nodes, edited on the heap
    edited(copy.deepcopy(before), edit_list, c)
    assert_diff(cowstore.diff(anon["a"], c), before, model)
    anon["b"] = c                       # both stored, sharing segments
    assert_diff(cowstore.diff(anon["a"], anon["b"]), before, model)
    assert_diff(cowstore.diff(anon["b"], b), model, model)


@given(start=nested_dicts | st.lists(values, max_size=6), edit_list=edits)
def test_diff_matches_the_reference(anon, start, edit_list):
    check_all_backings(anon, start, edit_list)


# Many blocks (16 map entries, 32 list values each): edits spread over them,
# deletions that compact the log, keys that move to the end.
big_maps = st.integers(0, 300).map(
    lambda n: {f"k{i}": ({"v": i, "l": [i]} if i % 7 == 0 else i) for i in range(n)})
big_lists = st.integers(0, 300).map(lambda n: [[i] if i % 5 == 0 else i for i in range(n)])
big_edits = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["set", "del", "move",
                                                                    "rewrite", "append",
                                                                    "pop", "insert"]),
                               st.integers(0, 400), st.booleans(), keys, values),
                     max_size=60)


@given(start=big_maps | big_lists, edit_list=big_edits)
def test_diff_of_large_versions_matches_the_reference(anon, start, edit_list):
    check_all_backings(anon, start, edit_list)


# ---- the rules, by example ------------------------------------------------------

def test_order_is_where_each_key_is_first_met():
    """D1: the worked example of diff.c."""
    a = CowDict({"x": 1, "y": 2, "z": 3})
    b = a.copy()
    b["y"] = 20
    del b["x"]
    b["x"] = 10                 # "x" moves to the end of b
    b["w"] = 0
    del b["z"]
    assert list(cowstore.diff(a, b)) == [(("x",), 1, 10), (("y",), 2, 20),
                                         (("z",), 3, MISSING), (("w",), MISSING, 0)]
    assert list(cowstore.diff(b, a)) == [(("x",), 10, 1), (("y",), 20, 2),
                                         (("z",), MISSING, 3), (("w",), 0, MISSING)]


def test_lists_report_by_index_and_nested_paths_grow():
    a = freeze({"l": [1, [2, 3], 4], "d": {"e": {"f": 1}}})
    b = a.copy()
    b["l"][1][0] = 5
    b["l"].append(6)
    b["d"]["e"]["f"] = 1.0      # equal, another type
    b["d"]["e"]["g"] = True
    assert list(cowstore.diff(a, b)) == [
        (("l", 1, 0), 2, 5), (("l", 3), MISSING, 6),
        (("d", "e", "f"), 1, 1.0), (("d", "e", "g"), MISSING, True)]
    b["l"].pop()
    b["l"].pop()
    assert [c.path for c in cowstore.diff(a, b)][:2] == [("l", 1, 0), ("l", 2)]


def test_a_value_in_one_word_is_never_reported():
    """D2: an untouched NaN (never equal to itself) next to a changed key."""
    a = CowDict({"nan": math.nan, "t": (math.nan,), "k": 1})
    b = a.copy()
    b["k"] = 2
    assert [c.path for c in cowstore.diff(a, b)] == [("k",)]
    b["nan"] = math.nan         # the same bits, another write: still one word
    assert [c.path for c in cowstore.diff(a, b)] == [("k",)]
    b["t"] = (math.nan,)        # a new tuple: compared, and NaN != NaN
    assert [c.path for c in cowstore.diff(a, b)] == [("t",), ("k",)]


def test_values_compare_as_they_read_back():
    """D3: frozen and mutable dicts and lists are walked; other types differ."""
    a = CowDict({"d": {"x": 1}, "s": {1}, "n": 1, "arr": np.arange(3)})
    f = FrozenDict(a)
    assert list(cowstore.diff(a, f)) == []
    c = CowDict(a)
    c["s"] = {1}                # equal, rewritten: CowSet against FrozenSet
    c["d"]["x"] = 2
    c["arr"] = np.arange(3.0)   # equal values, another dtype
    changes = {ch.path: ch for ch in cowstore.diff(f, c)}
    assert set(changes) == {("d", "x"), ("s",), ("arr",)}
    assert type(changes[("s",)].old) is FrozenSet and type(changes[("s",)].new) is CowSet
    assert changes[("arr",)].new.dtype == np.float64
    assert list(cowstore.diff(CowList([1, [2]]), FrozenList([1, [3]]))) == [((1, 0), 2, 3)]


def test_whole_values_and_plain_arguments():
    assert list(cowstore.diff(CowSet({1}), FrozenSet({1}))) == [((), CowSet({1}), FrozenSet({1}))]
    assert list(cowstore.diff(CowSet({1}), CowSet({1}))) == []
    assert [c.path for c in cowstore.diff(5, 5.0)] == [()]
    assert list(cowstore.diff((1, 2), (1, 2))) == []
    assert list(cowstore.diff({"a": [1]}, {"a": [1, 2]})) == [(("a", 1), MISSING, 2)]
    assert list(cowstore.diff(np.zeros(2), np.zeros(2))) == []
    assert [c.path for c in cowstore.diff(np.zeros(2), np.zeros(3))] == [()]
    assert [c.path for c in cowstore.diff(CowDict(a=1), [1])] == [()]


def test_diff_is_lazy_and_reads_a_snapshot():
    """D4: nothing happens before the first next(); the walk then reads the
    versions as they were, whatever happens to them meanwhile."""
    it = cowstore.diff(object(), 1)
    with pytest.raises(cowstore.UnsupportedTypeError):
        next(it)
    a = freeze({f"k{i}": i for i in range(100)})
    b = a.copy()
    it = cowstore.diff(a, b)
    for i in range(0, 100, 10):
        b[f"k{i}"] = -i         # before the first next(): seen
    assert next(it) == (("k10",), 10, -10)      # k0: 0 == -0, one word
    a.clear()
    b.clear()
    assert [c.path for c in it] == [(f"k{i}",) for i in range(20, 100, 10)]


def test_reported_containers_are_views_of_the_versions():
    a = freeze({"x": {"s": {1}, "l": [1]}})
    b = a.copy()
    b["x"]["s"] = {2}
    b["x"]["l"] = [1, 2]
    by_path = {c.path: c for c in cowstore.diff(a, b)}
    assert set(by_path) == {("x", "s"), ("x", "l", 1)}
    by_path[("x", "s")].old.add(5)      # written through, as a["x"]["s"].add(5)
    by_path[("x", "s")].new.add(6)
    assert thaw(a) == {"x": {"s": {1, 5}, "l": [1]}}
    assert thaw(b) == {"x": {"s": {2, 6}, "l": [1, 2]}}


def test_a_version_mutated_while_diffing_stays_consistent():
    a = freeze({"x": {"s": {1}}, "y": {"s": {1}}})
    b = a.copy()
    b["x"]["s"] = {2}
    b["y"]["s"] = {3}
    it = cowstore.diff(a, b)
    first = next(it)
    a["y"]["s"].add(9)                  # a moves on: the old view must resync
    second = next(it)
    assert second.path == ("y", "s") and thaw(second.old) == {1, 9}
    second.old.add(10)
    assert thaw(a) == {"x": {"s": {1}}, "y": {"s": {1, 9, 10}}}
    assert first.path == ("x", "s")


def test_abandoned_and_shared_iterators(anon):
    anon["v1"] = {f"k{i}": {"n": i} for i in range(1000)}
    v2 = anon["v1"].copy()
    for i in range(1, 1000, 100):
        v2[f"k{i}"]["n"] = -i
    it = cowstore.diff(anon["v1"], v2)
    assert next(it).path == ("k1", "n")
    del it                              # frames freed mid-walk
    anon["v2"] = v2
    assert len(list(cowstore.diff(anon["v1"], anon["v2"]))) == 10
    del anon["v1"], anon["v2"]


def test_a_finaliser_cannot_reenter_the_walk():
    """A next() from inside the walk (here: a finaliser run by the collector
    while the walk allocates) raises instead of walking twice at once."""
    import gc
    a = freeze({f"k{i}": {"n": i} for i in range(200)})
    b = a.copy()
    for i in range(0, 200, 3):
        b[f"k{i}"]["n"] = -1 - i
    it = cowstore.diff(a, b)
    seen, taken = [], []

    class Reenter:
        def __del__(self):
            try:
                taken.append(next(it))  # between two next() calls: allowed
            except ValueError as exc:
                seen.append(str(exc))
            except StopIteration:
                return
            plant()                     # garbage for the next collection

    def plant():
        x = Reenter()
        x.cycle = x                     # only the collector frees it

    thresholds = gc.get_threshold()
    gc.set_threshold(1)
    try:
        plant()
        changes = list(it)
    finally:
        gc.set_threshold(*thresholds)
        gc.collect()
    assert seen and set(seen) == {"diff iterator already executing"}
    assert sorted(c.path for c in changes + taken) == sorted(
        (f"k{i}", "n") for i in range(0, 200, 3))


@pytest.mark.parametrize("old, new", [(Decimal(1), Fraction(1)), (1 + 0j, Decimal(1)),
                                      (Fraction(1, 2), Decimal("0.5"))])
def test_a_nested_change_of_type_between_equal_numbers_is_reported(old, new):
    """D3: Decimal, Fraction and complex are equal numbers but types apart;
    nested, they share one storage tag, which alone let diff skip them."""
    for a, b in ((old, new), ({"p": old}, {"p": new}), ([0, old], [0, new])):
        changes = list(cowstore.diff(a, b))
        assert len(changes) == 1 and type(changes[0].old) is type(old)
        assert type(changes[0].new) is type(new)
    assert list(cowstore.diff({"p": Decimal(1)}, {"p": Decimal("1.0")})) == []


def test_missing_is_itself_through_copies_and_pickles():
    """MISSING was a bare instance of a class made on the fly: a deepcopy of
    an addition read as 'changed', and a Change could not be pickled (to a
    process pool)."""
    added = list(cowstore.diff({}, {"a": 1}))[0]
    for again in (copy.copy, copy.deepcopy,
                  *(lambda c, p=p: pickle.loads(pickle.dumps(c, p))
                    for p in range(pickle.HIGHEST_PROTOCOL + 1))):
        c = again(added)
        assert c.old is cowstore.MISSING and c.kind == "added"
