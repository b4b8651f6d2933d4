"""The builtins' last edge cases, each run on the builtin and on the cowstore
type side by side: the outcome (value returned, exception raised, contents
after) must be the same."""
import decimal
import enum
import fractions
import os
import subprocess
import sys

import pytest

import cowstore
from cowstore import CowDict, CowList, CowSet, FrozenDict, FrozenList, FrozenSet

LISTS = [list, CowList]
DICTS = [dict, CowDict]
SETS = [set, CowSet]


def outcome(call):
    """('ok', result) or ('raised', exception type, message)."""
    try:
        return ("ok", call())
    except Exception as exc:                    # noqa: BLE001 -- compared by the caller
        return ("raised", type(exc), str(exc))


def same_outcome(builtin_call, cow_call):
    a, b = outcome(builtin_call), outcome(cow_call)
    assert a[0] == b[0], (a, b)
    if a[0] == "raised":
        assert issubclass(b[1], a[1]) and a[2] == b[2], (a, b)
    else:
        assert a[1] == b[1], (a, b)
    return b


# ---- extend and __length_hint__ -----------------------------------------------

class Hinted:
    """Yields 1 and 2 but claims `hint` items."""

    def __init__(self, hint):
        self.items, self.hint = iter([1, 2]), hint

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.items)

    def __length_hint__(self):
        return self.hint


@pytest.mark.parametrize("hint", [0, 1, 10**6])
@pytest.mark.parametrize("how", ["extend", "init", "slice", "iadd"])
def test_a_length_hint_is_only_a_hint(hint, how):
    def run(cls):
        a = cls([0])
        if how == "extend":
            a.extend(Hinted(hint))
        elif how == "init":
            a = cls(Hinted(hint))
        elif how == "slice":
            a[1:] = Hinted(hint)
        else:
            a += Hinted(hint)
        return list(a)
    same_outcome(lambda: run(list), lambda: run(CowList))


@pytest.mark.parametrize("how", ["extend", "init", "slice", "iadd"])
def test_a_huge_length_hint_allocates_nothing(how):
    # CPython's list preallocates the hint and raises MemoryError when it is
    # too big to allocate; cowstore never trusts it (docs/semantics.md).
    a = CowList([0])
    if how == "extend":
        a.extend(Hinted(sys.maxsize))
    elif how == "init":
        a = CowList(Hinted(sys.maxsize))
        a.insert(0, 0)
    elif how == "slice":
        a[1:] = Hinted(2**62)
    else:
        a += Hinted(2**40)
    assert a == [0, 1, 2]


# ---- iterators ----------------------------------------------------------------

@pytest.mark.parametrize("make,grow", [
    (list, lambda a: a.append(9)), (CowList, lambda a: a.append(9)),
    (lambda x: reversed(x), None),
    (dict.fromkeys, lambda a: a.__setitem__(9, None)),
    (CowDict.fromkeys, lambda a: a.__setitem__(9, None)),
    (set, lambda a: a.add(9)), (CowSet, lambda a: a.add(9))], ids=repr)
def test_an_exhausted_iterator_stays_exhausted(make, grow):
    if grow is None:
        for cls in LISTS:
            a = cls([1, 2])
            it = reversed(a)
            assert list(it) == [2, 1]
            a.append(3)
            assert list(it) == []
        return
    a = make([1, 2])
    it = iter(a)
    assert list(it) == [1, 2]
    grow(a)
    assert list(it) == [] and it.__length_hint__() == 0


@pytest.mark.parametrize("cls", [CowList, CowDict, CowSet])
def test_an_exhausted_iterator_lets_go_of_its_container(cls):
    a = cls([1, 2]) if cls is not CowDict else cls({1: 2})
    refs = sys.getrefcount(a)
    iterators = [iter(a), reversed(a) if cls is not CowSet else iter(a)]
    assert sys.getrefcount(a) == refs + 2
    for it in iterators:
        list(it)
    assert sys.getrefcount(a) == refs
