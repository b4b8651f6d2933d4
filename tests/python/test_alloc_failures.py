"""Allocation failures: each operation run with its k-th allocation failing.

``_testcapi.set_nomemory(k, k + 1)`` makes CPython's k-th allocation from now
on fail (PyMem and PyObject; the core allocates through PyMem, see
cowstore/alloc.h).  The operation must then raise MemoryError, leave its
operands as they were (or as if it had fully happened, as dict and list do),
and leave nothing behind that changes a later call.
"""
import dataclasses
import enum

import pytest

import cowstore

_testcapi = pytest.importorskip("_testcapi")
if not hasattr(_testcapi, "set_nomemory"):
    pytest.skip("_testcapi.set_nomemory is not available", allow_module_level=True)

#: Successes in a row that end a sweep: an allocation whose failure is
#: handled (a cache that is skipped) lets the operation succeed at that k.
_QUIET = 20


def _run_failing(op, k, persistent=False):
    """op() with allocation k failing (and every later one if persistent):
    (result, None) or (None, exception)."""
    _testcapi.set_nomemory(k, 0 if persistent else k + 1)
    try:
        return op(), None
    except BaseException as e:          # noqa: B902 -- whatever it raised is the answer
        return None, e
    finally:
        _testcapi.remove_mem_hooks()


def failures(op, limit=5000):
    """The exceptions op raised, each allocation of it failing in turn."""
    raised, quiet = [], 0
    for k in range(limit):
        _, exc = _run_failing(op, k)
        if exc is None:
            quiet += 1
            if quiet == _QUIET:
                return raised
        else:
            quiet = 0
            raised.append(exc)
    raise AssertionError(f"op still failing after {limit} allocations")


def assert_memory_errors(raised):
    odd = [e for e in raised if not isinstance(e, MemoryError)]
    assert not odd, f"{len(odd)} failures were not MemoryError: {odd[:3]!r}"


# Classes met by these tests only: the codec checks each enum member and
# dataclass once per process, so one another test stored already is no probe.
class Shade(enum.Enum):
    DARK = 1
    LIGHT = 2


@dataclasses.dataclass(frozen=True)
class Spot:
    x: int


@pytest.mark.parametrize("value", [Shade.DARK, Spot(1)], ids=["enum", "dataclass"])
def test_extension_leaf_check_is_not_poisoned_by_memory_error(value):
    # The check that an enum member or dataclass reads back took any
    # exception for "no", MemoryError included, and cached that answer: the
    # value then raised UnsupportedTypeError for the rest of the process.
    assert_memory_errors(failures(lambda: cowstore.freeze([value])))
    assert cowstore.thaw(cowstore.freeze([value])) == [value]


def each_failure(make, op, limit=5000):
    """For k = 0, 1, ...: a fresh operand from make(), then op(operand) with
    allocation k failing; yields (operand, exception or None) until op has
    succeeded _QUIET times in a row."""
    quiet = 0
    for k in range(limit):
        operand = make()
        _, exc = _run_failing(lambda: op(operand), k)
        yield operand, exc
        quiet = quiet + 1 if exc is None else 0
        if quiet == _QUIET:
            return
    raise AssertionError(f"op still failing after {limit} allocations")


def assert_all_or_nothing(make, op, plain):
    """op(operand) either raises MemoryError with the operand as it was, or
    leaves it as op does without failures; plain(operand) compares them."""
    before = plain(make())
    operand = make()
    op(operand)
    after = plain(operand)
    seen = set()
    for operand, exc in each_failure(make, op):
        now = plain(operand)
        if exc is None:
            assert now == after
            continue
        assert isinstance(exc, MemoryError), repr(exc)
        assert now in (before, after), f"left half done: {now!r}"
        seen.add(now == before)
    assert True in seen                 # some failure left it as it was


def _ints(n):
    return lambda: cowstore.CowList(range(n))


@pytest.mark.parametrize("items", [list(range(100)), [{"id": i, "tag": "t"} for i in range(40)]],
                         ids=["ints", "records"])
def test_extend_is_all_or_nothing(items):
    # extend pushed the items in place one by one: an allocation failing on
    # the way left the list holding part of them (list.extend(list) never does).
    assert_all_or_nothing(_ints(10), lambda a: a.extend(items), cowstore.thaw)


def test_extend_of_a_nested_list_is_all_or_nothing():
    make = lambda: cowstore.CowDict({"l": list(range(10)), "n": 1})     # noqa: E731
    assert_all_or_nothing(make, lambda d: d["l"].extend(range(100)), cowstore.thaw)


@pytest.mark.parametrize("key", [None, lambda x: -x], ids=["plain", "key"])
def test_sort_never_loses_items(key):
    # sort empties the list while it sorts (as list.sort does) and put the
    # items back afterwards: an allocation failing there left the list empty
    # or with part of its items.  A failed sort may leave them in any order,
    # as list.sort may.
    items = [(i * 7919) % 1000 for i in range(300)]
    for a, exc in each_failure(lambda: cowstore.CowList(items), lambda a: a.sort(key=key)):
        assert exc is None or isinstance(exc, MemoryError), repr(exc)
        assert sorted(a) == sorted(items)
        if exc is None:
            assert list(a) == sorted(items, key=key)


def test_sort_never_loses_items_when_memory_stays_short():
    # Every allocation from the k-th on failing: putting the items back
    # must need none.
    items = [(i * 7919) % 1000 for i in range(300)]
    for k in range(2000):
        a = cowstore.CowList(items)
        _, exc = _run_failing(a.sort, k, persistent=True)
        assert sorted(a) == sorted(items)
        if exc is None:
            assert list(a) == sorted(items)
            return
        assert isinstance(exc, MemoryError), repr(exc)
    raise AssertionError("sort still failing after 2000 allocations")


@pytest.mark.parametrize("op", ["__iand__", "__ior__", "__isub__", "__ixor__"])
def test_set_operators_are_all_or_nothing(op):
    # &= cleared the set and added the kept elements back one by one, so an
    # allocation failing there left it empty or with part of them; |=, -=
    # and ^= left part of their change made (set's operators never do).
    make = lambda: cowstore.CowSet(range(300))      # noqa: E731
    other = set(range(0, 600, 2))
    assert_all_or_nothing(make, lambda s: getattr(s, op)(other), cowstore.thaw)


@pytest.mark.parametrize("op", ["__iand__", "__ior__", "__isub__", "__ixor__"])
def test_set_operators_leave_the_set_whole_when_memory_stays_short(op):
    # Every allocation from the k-th on failing: putting the set back must
    # need none.
    other = set(range(0, 600, 2))
    for k in range(3000):
        s = cowstore.CowSet(range(300))
        _, exc = _run_failing(lambda: getattr(s, op)(other), k, persistent=True)
        if exc is None:
            assert s == getattr(set(range(300)), op)(other)
            return
        assert isinstance(exc, MemoryError), repr(exc)
        assert s == set(range(300))
    raise AssertionError("still failing after 3000 allocations")


def test_intersection_update_never_loses_items():
    make = lambda: cowstore.CowSet(range(300))      # noqa: E731
    assert_all_or_nothing(make, lambda s: s.intersection_update(range(0, 600, 2), range(100)),
                          cowstore.thaw)


@pytest.mark.parametrize("other", [{"k3": "new", "a": 1, "b": [1, 2]}, {f"n{i}": i for i in range(60)}],
                         ids=["few", "many"])
def test_dict_update_is_all_or_nothing(other):
    # update set the keys one by one: an allocation failing on the way left
    # part of them set (dict.update(dict) makes room first: all or none).
    make = lambda: cowstore.CowDict({f"k{i}": i for i in range(50)})   # noqa: E731
    assert_all_or_nothing(make, lambda d: d.update(other), cowstore.thaw)
    assert_all_or_nothing(make, lambda d: d.update(**other), cowstore.thaw)


def test_update_of_an_empty_dict_is_all_or_nothing():
    # An empty dict takes the converted source's entries whole (O(1)).
    make = lambda: cowstore.CowDict()               # noqa: E731
    other = {f"n{i}": [i] for i in range(60)}
    assert_all_or_nothing(make, lambda d: d.update(other), cowstore.thaw)
    assert_all_or_nothing(make, lambda d: d.update(cowstore.CowDict(other)), cowstore.thaw)


def test_dict_update_leaves_the_dict_whole_when_memory_stays_short():
    other = {f"n{i}": i for i in range(60)}
    for k in range(3000):
        d = cowstore.CowDict({f"k{i}": i for i in range(50)})
        _, exc = _run_failing(lambda: d.update(other), k, persistent=True)
        if exc is None:
            assert d == {**{f"k{i}": i for i in range(50)}, **other}
            return
        assert isinstance(exc, MemoryError), repr(exc)
        assert d == {f"k{i}": i for i in range(50)}
    raise AssertionError("still failing after 3000 allocations")


def test_extend_leaves_the_list_whole_when_memory_stays_short():
    for k in range(3000):
        a = cowstore.CowList(range(10))
        _, exc = _run_failing(lambda: a.extend(range(100)), k, persistent=True)
        if exc is None:
            assert a == list(range(10)) + list(range(100))
            return
        assert isinstance(exc, MemoryError), repr(exc)
        assert a == list(range(10))
    raise AssertionError("still failing after 3000 allocations")


def test_deleting_a_list_tail_is_all_or_nothing():
    # del l[a:] pops the tail (no rebuild) after owning what the pops write:
    # a failure on a list shared with a copy leaves both whole.
    def make():
        a = cowstore.CowList(range(100))
        make.copy = a.copy()
        return a
    assert_all_or_nothing(make, lambda a: a.__delitem__(slice(5, None)), cowstore.thaw)
    assert make.copy == list(range(100))


@pytest.mark.parametrize("method, operand", [
    ("update", range(150, 600)),                          # added in place, one by one
    ("difference_update", range(0, 40)),                  # removed in place (a small operand)
    ("symmetric_difference_update", range(290, 300)),
], ids=["update", "difference_update", "symmetric_difference_update"])
def test_set_method_through_a_view_reaches_the_parent_when_it_fails(method, operand):
    # The set algebra between two sets of ours changes the set in place, key
    # by key, when the operand is small (or for update): an allocation
    # failing half way raised with the part already made not written back
    # into the parent, so the view and its parent disagreed.  What was made
    # may stay made (as set's methods leave it), but the parent must see it.
    seen_failure, quiet = False, 0
    for k in range(5000):
        d = cowstore.CowDict({"s": set(range(300)), "x": 1})
        view, other = d["s"], cowstore.CowSet(operand)
        keep = d.copy()                     # the view's set no longer the parent's alone
        _, exc = _run_failing(lambda: getattr(view, method)(other), k)
        assert cowstore.thaw(view) == cowstore.thaw(d)["s"], (k, exc)
        assert keep == {"s": set(range(300)), "x": 1}
        if exc is None:
            want = set(range(300))
            getattr(want, method)(operand)
            assert view == want
            quiet += 1
            if quiet == _QUIET:
                break
            continue
        assert isinstance(exc, MemoryError), repr(exc)
        seen_failure, quiet = True, 0
    assert seen_failure and quiet == _QUIET
