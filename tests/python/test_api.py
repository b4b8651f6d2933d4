"""Behaviour of the public API that a dict/list/set user relies on, and the
documented places where cowstore differs."""
import collections.abc as abc
import copy
import gc
import pickle
import subprocess
import sys

import pytest

import cowstore
from cowstore import (CowDict, CowList, CowSet, FrozenDict, FrozenList, FrozenSet,
                      freeze, thaw)


class Opaque:
    pass


# ---- dict behaviour ---------------------------------------------------------

def test_dict_order_follows_dict_semantics():
    d, plain = CowDict(), {}
    for target in (d, plain):
        for k in "abcde":
            target[k] = ord(k)
        target["b"] = 0          # re-assignment keeps its place
        del target["c"]
        target["c"] = 1          # re-insertion moves to the end
    assert list(d.items()) == list(plain.items())
    assert list(reversed(d)) == list(reversed(plain))
    assert d.popitem() == plain.popitem() == ("c", 1)


def test_numeric_keys_unify_like_dict():
    d = CowDict()
    d[1] = "int"
    d[1.0] = "float"
    d[True] = "bool"
    assert len(d) == 1 and d[1] == "bool"
    assert type(next(iter(d))) is int      # the first key object's type is kept
    d[2 ** 70] = "big"
    assert d[float(2 ** 70)] == "big"
    d[-0.0] = "zero"
    assert d[0] == "zero"


def test_missing_key_and_unhashable_key_errors_match_dict():
    d = CowDict(a=1)
    with pytest.raises(KeyError) as info:
        d["nope"]
    assert info.value.args == ("nope",)
    with pytest.raises(TypeError, match="unhashable"):
        d[["list"]] = 1
    with pytest.raises(TypeError, match="unhashable"):
        d[["list"]]
    assert d.get(Opaque()) is None          # hashable but never stored: absent
    assert Opaque() not in d


def test_dict_api_surface():
    d = CowDict.fromkeys("ab", 0)
    assert d == {"a": 0, "b": 0}
    assert d.setdefault("c", []) == [] and isinstance(d["c"], CowList)
    d.update({"x": 1}, y=2)
    d.update([("z", 3)])
    assert d.pop("z") == 3 and d.pop("z", "dflt") == "dflt"
    assert (d | {"q": 9})["q"] == 9 and "q" not in d
    assert ({"q": 9} | d)["a"] == 0
    d |= {"w": 5}
    assert d["w"] == 5
    assert set(d.keys()) & {"a", "w"} == {"a", "w"}
    assert ("a", 0) in d.items()
    assert 5 in d.values()
    d.clear()
    assert len(d) == 0 and d == {}
    with pytest.raises(KeyError):
        d.popitem()
    assert isinstance(d, abc.MutableMapping)
    assert CowDict[str, int] is not None


def test_views_made_by_hand_or_by_subclasses_iterate_as_dict_views():
    d = CowDict(a=1, b=2)
    view_classes = [type(d.keys()), type(d.values()), type(d.items())]
    # Made by hand (their __init__ fills the _mapping slot), over any mapping.
    for cls, want in zip(view_classes, (["a", "b"], [1, 2], [("a", 1), ("b", 2)])):
        assert list(cls(d)) == want and len(cls(d)) == 2
        assert list(cls({"a": 1, "b": 2})) == want

    class Renamed(view_classes[2]):
        """A subclass whose _mapping is a property: iteration goes through it."""

        @property
        def _mapping(self):
            return CowDict(z=26)

        @_mapping.setter
        def _mapping(self, mapping):
            pass

    assert list(Renamed(d)) == [("z", 26)]
    # Never initialised: the slot is empty, so iterating raises as getattr would.
    with pytest.raises(AttributeError):
        iter(view_classes[0].__new__(view_classes[0]))


def test_the_package_containers_are_untracked_and_subclass_cycles_still_collect():
    """Our own classes' instances hold nothing the GC could follow, so they are
    off its lists (a full collection does not walk records held by the
    program); a user's subclass may hold a __dict__ and stays tracked."""
    d = cowstore.freeze({"rows": [{"a": 1}], "s": {1}})
    made = [CowDict(), CowList([1]), FrozenDict(a=1).copy(), d, d["rows"], d["rows"][0],
            d["s"], copy.copy(d), CowSet([1]), FrozenList([2]), FrozenSet([3])]
    assert not any(gc.is_tracked(x) for x in made)

    freed = []

    class Node(CowDict):
        def __del__(self):
            freed.append(True)

    node = Node(a=1)
    node.me = node                          # a cycle only the GC can free
    assert gc.is_tracked(node) and gc.is_tracked(copy.copy(node))
    assert copy.copy(node).me is node and not gc.is_tracked(node.copy())   # copy(): a CowDict
    freed.clear()                           # the copies' own __del__
    del node
    gc.collect()
    assert freed


def test_nested_views_write_through_and_detach():
    d = CowDict({"a": {"b": 1}, "l": [1, {"deep": []}]})
    d["a"]["b"] = 2
    d["l"][1]["deep"].append("x")
    assert thaw(d) == {"a": {"b": 2}, "l": [1, {"deep": ["x"]}]}
    x = d["a"]
    y = d["a"]
    y["c"] = 3                      # a second view of the same slot
    assert x == {"b": 2, "c": 3}    # ...is seen by the first
    d["a"] = {}                     # the slot now holds another container
    x["after"] = 1
    assert d["a"] == {} and x["after"] == 1


def test_storing_copies_in_value_semantics():
    inner = {"k": 1}
    d = CowDict(a=inner)
    inner["k"] = 2
    assert d["a"]["k"] == 1


# ---- copies -------------------------------------------------------------------

@pytest.mark.parametrize("make", [copy.copy, copy.deepcopy, lambda c: c.copy()])
def test_copies_are_independent_both_ways(make):
    d = freeze({"a": {"b": [1, 2]}, "n": 1})
    c = make(d)
    c["a"]["b"].append(3)
    d["n"] = 2
    assert thaw(d) == {"a": {"b": [1, 2]}, "n": 2}
    assert thaw(c) == {"a": {"b": [1, 2, 3]}, "n": 1}


def test_view_of_copied_container_detaches_from_old_slot():
    d = CowDict(a={"x": 1})
    x = d["a"]
    d["a"] = x.copy()               # a new container in the slot
    x["x"] = 99
    assert d["a"]["x"] == 1


# ---- list behaviour -----------------------------------------------------------

def test_list_api_surface():
    l = CowList(range(5))
    l.append(5)
    l.extend([6, 7])
    l.insert(0, -1)
    l.insert(-1, 6.5)
    l.insert(100, 8)
    plain = list(range(5)) + [5, 6, 7]
    plain.insert(0, -1)
    plain.insert(-1, 6.5)
    plain.insert(100, 8)
    assert l == plain
    assert l.pop() == plain.pop() and l.pop(0) == plain.pop(0)
    l.remove(6.5)
    plain.remove(6.5)
    assert l == plain and l.index(3) == plain.index(3) and l.count(3) == 1
    l[1:3] = ["a", "b", "c"]
    plain[1:3] = ["a", "b", "c"]
    l[::2] = range(len(l[::2]))
    plain[::2] = range(len(plain[::2]))
    del l[-2:]
    del plain[-2:]
    assert l == plain and l[::-1] == plain[::-1]
    assert isinstance(l[1:], CowList)
    with pytest.raises(ValueError):
        l[::2] = [1]
    with pytest.raises(IndexError, match="out of range"):
        l[100]
    with pytest.raises(IndexError, match="empty"):
        CowList().pop()
    with pytest.raises(ValueError):
        l.index("absent")
    assert isinstance(l, abc.MutableSequence)


def test_list_operators_and_sort():
    l = CowList([3, 1, 2])
    assert l + [4] == [3, 1, 2, 4] and [0] + l == [0, 3, 1, 2]
    assert l * 2 == [3, 1, 2] * 2 and 2 * l == [3, 1, 2] * 2
    l.sort()
    assert l == [1, 2, 3]
    l.sort(key=lambda v: -v, reverse=True)
    assert l == [1, 2, 3]
    l.reverse()
    assert l == [3, 2, 1]
    assert l > [3, 2] and l < [4] and l >= CowList([3, 2, 1])
    l += [0]
    l *= 2
    assert l == [3, 2, 1, 0] * 2
    assert (l == (3, 2, 1, 0, 3, 2, 1, 0)) is False


def test_big_list_crosses_trie_levels():
    n = 40000
    l = CowList(range(n))
    c = l.copy()
    for i in range(0, n, 997):
        c[i] = -i
    assert l[n - 1] == n - 1 and c[997] == -997 and l[997] == 997
    while len(c) > 10:
        c.pop()
    assert c == [0] + list(range(1, 10)) and len(l) == n


# ---- sets -------------------------------------------------------------------------

def test_set_api_surface():
    s = CowSet([1, 2, 3])
    assert s | {4} == {1, 2, 3, 4} and s & {2, 9} == {2} and s - {1} == {2, 3}
    assert s ^ {3, 4} == {1, 2, 4} and s <= {1, 2, 3, 4} and s < {1, 2, 3, 4}
    s.add(4)
    s.discard(99)
    s.remove(4)
    with pytest.raises(KeyError):
        s.remove(4)
    assert s.pop() == 3 and s == {1, 2}
    assert isinstance(s, abc.MutableSet)
    assert freeze({"s": frozenset({1})})["s"] == FrozenSet({1})
    assert isinstance(freeze({"s": {1}})["s"], CowSet)


# ---- frozen -------------------------------------------------------------------

def test_frozen_variants_are_immutable_and_hashable():
    fd = FrozenDict(a={"b": [1]})
    assert hash(fd) == hash(FrozenDict(a={"b": [1]}))
    assert isinstance(fd["a"], FrozenDict) and isinstance(fd["a"]["b"], FrozenList)
    with pytest.raises(cowstore.FrozenError):
        fd["x"] = 1
    with pytest.raises(TypeError):       # FrozenError is a TypeError too
        fd["a"]["b"].append(2)
    fl = FrozenList([1, (2, 3)])
    assert {fl: 1}[FrozenList([1, (2, 3)])] == 1
    assert hash(FrozenSet({1, 2})) == hash(FrozenSet({2, 1}))
    with pytest.raises(TypeError, match="unhashable"):
        hash(CowDict())
    d = CowDict()
    d[fd] = "frozen key"
    assert d[FrozenDict(a={"b": [1]})] == "frozen key"


# ---- conversion errors ------------------------------------------------------

def test_unsupported_type_names_type_and_path():
    with pytest.raises(cowstore.UnsupportedTypeError,
                       match=r"'Opaque' \(at root\['a'\]\[1\]\)"):
        freeze({"a": [1, Opaque()]})
    assert issubclass(cowstore.UnsupportedTypeError, TypeError)
    assert issubclass(cowstore.UnsupportedTypeError, cowstore.CowstoreError)


def test_cycle_is_refused():
    loop = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(cowstore.CycleError, match=r"root\['a'\]\[0\]"):
        freeze(loop)
    assert issubclass(cowstore.CycleError, ValueError)


def test_failed_insert_leaves_container_unchanged():
    d = CowDict(a=1)
    with pytest.raises(cowstore.UnsupportedTypeError):
        d["b"] = {"ok": 1, "bad": Opaque()}
    with pytest.raises(cowstore.UnsupportedTypeError):
        d.update({"c": 1, "d": Opaque()})
    l = CowList([1])
    with pytest.raises(cowstore.UnsupportedTypeError):
        l.extend([2, Opaque()])
    assert d == {"a": 1} and l == [1]


def test_nan_key_is_refused_with_reason():
    with pytest.raises(cowstore.CowValueError, match="NaN"):
        CowDict()[float("nan")] = 1


# ---- pickling and freeze/thaw -------------------------------------------------

@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(protocol):
    data = {"a": [1, 2.5, "s", b"b", None, True, (1, 2)], "n": {"x": {1, 2}},
            "f": frozenset({3}), "big": 2 ** 100, "neg": -(2 ** 90)}
    for obj in (freeze(data), FrozenDict(data), CowList([data]), CowSet({1, 2}),
                FrozenList([1]), FrozenSet({1})):
        back = pickle.loads(pickle.dumps(obj, protocol))
        assert type(back) is type(obj) and back == obj


def test_freeze_thaw_round_trip_keeps_types():
    data = {"t": (1, [2]), "s": {1}, "fs": frozenset({2}), "l": [{"d": 1}], "i": 2 ** 64,
            "long": "x" * 100, "b": b"\x00" * 20, "u": "h\u00e9llo \U0001f600"}
    back = thaw(freeze(data))
    assert back == data
    assert type(back["fs"]) is frozenset and type(back["t"]) is tuple
    assert freeze(5) == 5 and freeze("x") == "x"


def test_documented_edges_of_keys_and_tuples():
    d = CowDict(a=1, t=({"x": 1},))
    assert "\ud800" not in d and d.get("\ud800") is None   # unstorable key: absent
    with pytest.raises(UnicodeEncodeError):
        d["\ud800"] = 1
    d["t"][0]["x"] = 2                 # a container inside a tuple is a detached copy
    assert d["t"][0]["x"] == 1
    from decimal import Decimal
    assert Decimal(1) in CowList([1])             # other numeric types: found by Python's ==
    assert CowDict({1: "one"})[Decimal(1)] == "one"
    assert Decimal("0.5") not in CowDict({1: "one"})


def test_in_place_view_writes_never_reach_copies_or_snapshots():
    d = freeze({"a": {"n": 0}, "l": [[0]]})
    x = d["a"]
    c = d.copy()                     # shares d's nodes, x's container included
    x["n"] = 1                       # x's slot is exclusive only after path copy
    d["l"][0].append(1)
    assert thaw(c) == {"a": {"n": 0}, "l": [[0]]}
    it = iter(d.items())             # a snapshot of d
    d["a"]["n"] = 2
    assert dict(it)["a"]["n"] == 2   # views out of a snapshot resync to d
    e = d.copy()
    y = e["a"]
    y["n"] = 3
    y["n"] = 4                       # second write: in place, still private to e
    assert d["a"]["n"] == 2 and e["a"]["n"] == 4 and c["a"]["n"] == 0


def test_a_write_that_changed_nothing_leaves_no_private_root_to_write_in_place():
    """A write that owns a view's root and then changes nothing (discard of an
    absent element, an unhashable argument) copies the root without putting
    it back in the slot; that copy, held by the view and by one more holder,
    has two references like a view-exclusive container, but the second is
    not the slot: the next write must copy it, not write it in place."""
    d = CowDict({"s": {76}, "x": 1})
    v = d["s"]
    held = freeze(v)                  # a third reference to the slot's set
    v.discard(373)                    # owns v's root (a copy), changes nothing
    del held
    f = freeze(v)                     # v's copy: v and f, two references
    v.add(5)
    assert f == {76} and v == {76, 5} and d["s"] == {76, 5}
    d2 = CowDict({"s": {1}})
    w, w2 = d2["s"], d2["s"]
    len(w2)                           # w2 resolved: it holds the slot's set too
    with pytest.raises(TypeError):
        w.discard([1])
    del w2
    g = freeze(w)
    w.add(2)
    assert g == {1} and d2["s"] == {1, 2}


def test_wrong_argument_types_raise_like_the_builtins():
    with pytest.raises(TypeError):
        CowDict(1)
    with pytest.raises(TypeError):
        CowDict({}, {})
    with pytest.raises(ValueError):
        CowDict([(1, 2, 3)])            # dict's own message for a bad pair
    with pytest.raises(TypeError):
        CowList(5)
    with pytest.raises(TypeError):
        CowSet(None)
    l = CowList([1, 2])
    with pytest.raises(TypeError, match="integers or slices"):
        l["x"]
    with pytest.raises(TypeError, match="integers or slices"):
        l["x"] = 1
    with pytest.raises(TypeError):
        l.extend(5)
    with pytest.raises(TypeError):
        l.insert("a", 1)
    with pytest.raises(TypeError):
        CowDict().update(5)
    assert [c.path for c in cowstore.diff(CowDict(), 5)] == [()]   # a whole-value change
    assert l == [1, 2]


def test_the_extension_codec_is_imported_on_first_use():
    """`import cowstore` leaves out the extension-leaf codec and its dozen
    standard modules (half the import's time); the first datetime stored, or
    the first cowstore.register, brings it in."""
    code = ("import sys, datetime, cowstore\n"
            "print('cowstore._ext' in sys.modules)\n"
            "assert cowstore.thaw(cowstore.freeze([datetime.date(2020, 1, 2)])) == "
            "[datetime.date(2020, 1, 2)]\n"
            "print('cowstore._ext' in sys.modules, callable(cowstore.register))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True", "True"]
    with pytest.raises(AttributeError, match="no_such_name"):
        cowstore.no_such_name
