"""The builtins' last edge cases, each run on the builtin and on the cowstore
type side by side: the outcome (value returned, exception raised, contents
after) must be the same."""
import decimal
import enum
import fractions
import gc
import os
import subprocess
import sys
import weakref

import pytest

import cowstore
from cowstore import CowDict, CowList, CowSet, FrozenDict, FrozenList, FrozenSet, _cowstore

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


# ---- __init__ on an existing container ---------------------------------------

@pytest.mark.parametrize("cls", LISTS)
def test_list_init_clears_and_refills(cls):
    a = cls([1, 2, 3])
    a.__init__("ab")
    assert a == ["a", "b"]
    a.__init__()
    assert a == []
    a = cls([1, 2])
    a.__init__(a)                       # cleared first, so it reads an empty list
    assert a == []
    a = cls([1, 2])
    with pytest.raises(TypeError):
        a.__init__(5)
    assert a == []                      # cleared before the argument was refused


@pytest.mark.parametrize("cls", DICTS)
def test_dict_init_updates(cls):
    a = cls({"a": 1, "b": 2})
    a.__init__({"b": 3, "c": 4}, d=5)
    assert a == {"a": 1, "b": 3, "c": 4, "d": 5}
    assert list(a) == ["a", "b", "c", "d"]
    a.__init__([("e", 6)])
    assert a == {"a": 1, "b": 3, "c": 4, "d": 5, "e": 6}
    a.__init__(a)
    assert len(a) == 5
    with pytest.raises(TypeError, match="expected at most 1 argument, got 2"):
        a.__init__({}, {})


@pytest.mark.parametrize("cls", SETS)
def test_set_init_clears_and_refills(cls):
    a = cls("abc")
    a.__init__("xy")
    assert a == {"x", "y"}
    a.__init__(a)
    assert a == set()
    a = cls("ab")
    a.__init__()
    assert a == set()


@pytest.mark.parametrize("builtin,cow", [(tuple, FrozenList), (frozenset, FrozenSet),
                                         (frozenset, FrozenDict)])
def test_frozen_init_again_changes_nothing(builtin, cow):
    # tuple and frozenset are made by __new__, and __init__ ignores its argument
    b, c = builtin([1]), cow({1: 2} if cow is FrozenDict else [1])
    before = c.copy()
    b.__init__([2])
    c.__init__([(2, 3)] if cow is FrozenDict else [2])
    assert b == builtin([1]) and c == before


def test_init_again_on_a_view_writes_through():
    for outer, plain in ((CowDict({"l": [1, 2], "d": {"a": 1}, "s": {1}}),
                          {"l": [1, 2], "d": {"a": 1}, "s": {1}}),):
        for key, arg in (("l", [3]), ("d", {"b": 2}), ("s", [5])):
            view = outer[key]
            view.__init__(arg)
            type(plain[key]).__init__(plain[key], arg)
        assert outer == plain


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


# ---- probes that only Python can compare -------------------------------------

class Anything:
    """Equal to everything (list asks `item == x`, which falls back to this)."""
    __hash__ = None

    def __eq__(self, other):
        return True


class LikeOne:
    """Hashes and compares as 1: dict and set find it where 1 is a key."""

    def __hash__(self):
        return hash(1)

    def __eq__(self, other):
        return other == 1


class Color(enum.IntEnum):
    RED = 1
    BLUE = 2


class Refuses:
    def __eq__(self, other):
        raise ZeroDivisionError("no")

    __hash__ = object.__hash__


PROBES = [Anything(), LikeOne(), Color.RED, Color.BLUE, decimal.Decimal(1),
          fractions.Fraction(3, 2), 1 + 0j, (decimal.Decimal(2), 1), object(), Refuses()]


@pytest.mark.parametrize("probe", PROBES, ids=repr)
def test_list_searches_ask_python_for_foreign_probes(probe):
    items = [0, "x", 1.5, (2, 1), 1, [1], {"a": 1}]
    for op in (lambda a: probe in a, lambda a: a.count(probe), lambda a: a.index(probe),
               lambda a: a.index(probe, 3), lambda a: a.index(probe, -3, -1)):
        same_outcome(lambda: op(list(items)), lambda: op(CowList(items)))
    a, b = list(items), CowList(items)
    same_outcome(lambda: a.remove(probe), lambda: b.remove(probe))
    assert a == b


@pytest.mark.parametrize("probe", PROBES[1:], ids=repr)
def test_dict_lookups_by_foreign_keys(probe):
    items = {0: "zero", 1: "one", 1.5: "x", (2, 1): "pair", "s": "str"}

    def reads(d):
        return (probe in d, d.get(probe, "default"), outcome(lambda: d[probe]))
    same_outcome(lambda: reads(dict(items)), lambda: reads(CowDict(items)))
    # (setdefault only where the probe is found: cowstore cannot store it as a new key)
    for op in (lambda d: d.pop(probe, "default"),
               lambda d: d.setdefault(probe, 0) if probe in d else None):
        a, b = dict(items), CowDict(items)
        same_outcome(lambda: op(a), lambda: op(b))
        assert a == b and list(a) == list(b)
    a, b = dict(items), CowDict(items)
    same_outcome(lambda: a.__delitem__(probe), lambda: b.__delitem__(probe))
    assert a == b


class SurrogateStr(str):
    pass


# Probes cowstore cannot store -- lone surrogates (no UTF-8 form), a NaN key
# -- equal no stored value: searching for one finds nothing, as list, dict
# and set do, rather than raising the error storing it would.
UNSTORABLE_PROBES = ["\ud800", ("\ud800",), ("a", ("\udc00",)), frozenset({"\ud800"}),
                     SurrogateStr("\ud800"), {float("nan"): 1}, {"\ud800": 1}, ["\ud800"],
                     {"\ud800"}, {1: "\udc00"}]


@pytest.mark.parametrize("probe", UNSTORABLE_PROBES, ids=ascii)
def test_list_searches_for_unstorable_probes_find_nothing(probe):
    items = [0, "x", ("\ud7ff",), [1], {"a": 1}]
    for op in (lambda a: probe in a, lambda a: a.count(probe), lambda a: a.index(probe)):
        same_outcome(lambda: op(list(items)), lambda: op(CowList(items)))
    a, b = list(items), CowList(items)
    same_outcome(lambda: a.remove(probe), lambda: b.remove(probe))
    assert a == b


@pytest.mark.parametrize("probe", [p for p in UNSTORABLE_PROBES if p.__hash__], ids=ascii)
def test_dict_and_set_lookups_by_unstorable_keys_find_nothing(probe):
    items = {0: "zero", "x": "str", ("\ud7ff",): "tuple"}

    def reads(d):
        return (probe in d, d.get(probe, "default"), outcome(lambda: d[probe]),
                d.pop(probe, "default"), outcome(lambda: d.__delitem__(probe)))
    same_outcome(lambda: reads(dict(items)), lambda: reads(CowDict(items)))
    for cls in SETS:
        s = cls(items)
        assert (probe in s, s.discard(probe), outcome(lambda: s.remove(probe))[1]) == \
            (False, None, KeyError)


@pytest.mark.parametrize("probe", [LikeOne(), Color.RED, decimal.Decimal(1), 1 + 0j],
                         ids=repr)
def test_assigning_by_a_foreign_key_equal_to_a_stored_one_keeps_the_stored_key(probe):
    a, b = {1: "one", 2: "two"}, CowDict({1: "one", 2: "two"})
    a[probe] = "uno"
    b[probe] = "uno"
    assert a == b and [type(k) for k in a] == [type(k) for k in b] == [int, int]
    s, t = {1, 2}, CowSet([1, 2])
    s.add(probe)
    t.add(probe)
    assert s == t and [type(k) for k in t] == [int, int]
    with pytest.raises(cowstore.UnsupportedTypeError):
        b[Refuses()] = 1                    # equal to no stored key: cannot be stored


@pytest.mark.parametrize("probe", PROBES[1:], ids=repr)
def test_set_lookups_by_foreign_elements(probe):
    items = [0, 1, 1.5, (2, 1), "s"]
    same_outcome(lambda: probe in set(items), lambda: probe in CowSet(items))
    for op in (lambda s: s.discard(probe), lambda s: s.remove(probe)):
        a, b = set(items), CowSet(items)
        same_outcome(lambda: op(a), lambda: op(b))
        assert a == b


@pytest.mark.parametrize("cls", LISTS)
def test_a_probe_that_mutates_the_list_while_compared(cls):
    a = cls(range(5))

    class Mutating:
        def __eq__(self, other):
            a.append(other)
            return other == 3
    assert Mutating() in a and a[:5] == [0, 1, 2, 3, 4] and len(a) == 9


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


# ---- sort ---------------------------------------------------------------------

@pytest.mark.parametrize("mutate", [lambda a, x: a.append(x), lambda a, x: a.insert(0, x),
                                    lambda a, x: a.extend([x, x])])
def test_sort_refuses_a_list_changed_by_its_key(mutate):
    def run(cls):
        a = cls([3, 1, 2])
        seen = []

        def key(x):
            seen.append(len(a))            # the list looks empty during the sort
            mutate(a, x)
            return x
        result = outcome(lambda: a.sort(key=key))
        return result, list(a), seen
    same_outcome(lambda: run(list), lambda: run(CowList))
    assert run(CowList)[0][:2] == ("raised", ValueError)


@pytest.mark.parametrize("key", [None, lambda x: 1 / (x - 2)])
def test_sort_failing_midway_keeps_every_item(key):
    def run(cls):
        a = cls([3, "a", 2, 1]) if key is None else cls([3, 1, 2])
        return outcome(lambda: a.sort(key=key)), list(a)
    same_outcome(lambda: run(list), lambda: run(CowList))


# ---- fromkeys on subclasses ------------------------------------------------------

@pytest.mark.parametrize("base", [dict, CowDict, FrozenDict])
def test_fromkeys_on_a_subclass_with_its_own_new(base):
    calls = []

    class Sub(base):
        def __new__(cls):                   # takes no argument: fromkeys calls cls()
            calls.append("new")
            return super().__new__(cls)

    d = Sub.fromkeys("ab", 0)
    assert type(d) is Sub and d == {"a": 0, "b": 0} and calls == ["new"]


@pytest.mark.parametrize("base", DICTS)
def test_fromkeys_on_a_subclass_sets_each_key_through_setitem(base):
    class Logged(base):
        def __setitem__(self, key, value):
            super().__setitem__(key, (key, value))
    assert Logged.fromkeys("ab", 1) == {"a": ("a", 1), "b": ("b", 1)}
    assert type(Logged.fromkeys("a")) is Logged


# ---- CowSet order ---------------------------------------------------------------

ORDER_SCRIPT = """
import cowstore
print(list(cowstore.CowSet(['c', 'a', 'b'])), list(cowstore.FrozenSet('zyx')),
      list(cowstore.CowSet(x for x in ['q', 'p', 'q', 'o'])))
"""


def test_cowset_keeps_the_iterables_order_whatever_the_hash_seed():
    here = os.path.dirname(os.path.dirname(cowstore.__file__))
    outputs = set()
    for seed in ("1", "2", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed,
                   PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH"))
                                              if p))
        outputs.add(subprocess.run([sys.executable, "-c", ORDER_SCRIPT], env=env, check=True,
                                   capture_output=True, text=True).stdout)
    assert outputs == {"['c', 'a', 'b'] ['z', 'y', 'x'] ['q', 'p', 'o']\n"}


def test_cowset_keeps_the_first_of_equal_elements_as_set_does():
    for items in ([1, 1.0, True], [True, 1], [2.0, 2]):
        assert [type(x) for x in CowSet(items)] == [type(x) for x in set(items)]


# ---- ints at the edges of their machine forms ------------------------------------

INT_EDGES = [0, 1, -1, 255, 256, -5, -6, 2 ** 30 - 1, 2 ** 30, -(2 ** 30 - 1), -(2 ** 30),
             -(2 ** 30) - 1, 2 ** 31, 2 ** 63 - 1, -(2 ** 63), 2 ** 63, -(2 ** 63) - 1, 2 ** 64,
             10 ** 30, -(10 ** 30), True, False]


@pytest.mark.parametrize("value", INT_EDGES)
def test_an_int_value_set_and_read_back_is_the_same_int(value):
    """d[k] = v takes a one-digit int straight from the object (convert.c
    one_digit_int), a wider one through the C API, a bool as a bool; every
    edge of those forms reads back equal and of the same type, on the first
    write and on an overwrite in place."""
    d = CowDict({"k": 7, "other": "x"})
    for _ in range(2):
        d["k"] = value
        got = d["k"]
        assert got == value and type(got) is type(value), (value, got)
    d["k"] = -value if not isinstance(value, bool) else not value
    assert d["k"] == (-value if not isinstance(value, bool) else not value)


def _nested(cls, depth):
    x = cls()
    for _ in range(depth):
        x = cls({"a": x}) if cls is CowDict else cls([x, 1])
    return x


@pytest.mark.parametrize("cls", [CowDict, CowList])
def test_containers_nested_past_the_c_stack_free_without_crashing(cls):
    """A copy is O(1), so x = CowDict({'a': x}) in a loop nests 200,000
    levels without any recursion to build them.  Freeing them used to
    recurse once per level and overflow the C stack (a segfault); past a
    bound the releases are now deferred, as CPython's trashcan defers."""
    before = _cowstore._live_nodes()
    x = _nested(cls, 200_000)
    y = x.copy()
    del x
    del y
    assert _cowstore._live_nodes() == before


CHAIN_SCRIPT = """
import sys
from cowstore import CowDict, CowList, _cowstore
cls = CowDict if sys.argv[1] == "dict" else CowList
before = _cowstore._live_nodes()
x = cls()
for _ in range(200_000):
    x = cls({"a": x}) if cls is CowDict else cls([x, 1])
v = x
for _ in range(200_000):
    v = v["a"] if cls is CowDict else v[0]
assert len(v) == 0
del x
del v
assert _cowstore._live_nodes() == before
print("freed")
"""


def _small_stack():
    import resource
    resource.setrlimit(resource.RLIMIT_STACK, (1 << 20, resource.getrlimit(resource.RLIMIT_STACK)[1]))


@pytest.mark.parametrize("cls", ["dict", "list"])
def test_a_chain_of_nested_views_past_the_c_stack_frees_without_crashing(cls):
    """Each view holds the view it was read from, so reading 200,000 levels
    down makes a chain.  Reading resolved the chain above by a recursion
    (a segfault here), and freeing it frees one view into the next: the
    package's classes free their objects themselves (not through
    subtype_dealloc) and must keep its trashcan.  A 1 MiB C stack makes a
    missing trashcan fail here as it would at a million levels on 8 MiB."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", CHAIN_SCRIPT, cls], env=env, capture_output=True,
                         text=True, timeout=120, preexec_fn=_small_stack)
    assert out.returncode == 0 and out.stdout.strip() == "freed", (out.returncode, out.stderr[-2000:])


def test_writes_into_views_past_the_recursion_limit_raise_before_writing():
    """A write into a view is written back up its chain, one C call a level:
    past the recursion limit it raises RecursionError before anything
    changes (the view and its parents agree), never a crash; reads and
    writes within the limit still reach the top."""
    x = CowDict(leaf=0)
    for _ in range(5000):
        x = CowDict(a=x)
    v = x
    for _ in range(5000):
        v = v["a"]
    with pytest.raises(RecursionError):
        v["new"] = 1
    assert "new" not in v and v == {"leaf": 0}
    mid = x
    for _ in range(100):
        mid = mid["a"]
    mid["m"] = 1
    assert x["a"]["a"] is not None and "m" in mid
    walk = x
    for _ in range(100):
        walk = walk["a"]
    assert walk["m"] == 1


@pytest.mark.parametrize("cls", [CowDict, FrozenDict, CowList, FrozenList, CowSet, FrozenSet])
def test_finalizers_and_weak_references_of_containers_run_as_for_any_object(cls):
    """The package's own classes free their objects themselves; a subclass
    with __del__ and weak references, and a __del__ set on the class itself
    later, still run as Python runs them for any object."""
    ran = []

    class Sub(cls):
        def __del__(self):
            ran.append(len(self))

    s = Sub([1, 2]) if cls in (CowList, FrozenList, CowSet, FrozenSet) else Sub(a=1, b=2)
    ref = weakref.ref(s)
    del s
    assert ran == [2] and ref() is None
    cls.__del__ = lambda self: ran.append(-len(self))
    try:
        made = cls([1]) if cls in (CowList, FrozenList, CowSet, FrozenSet) else cls(a=1)
        del made
    finally:
        del cls.__del__
    gc.collect()
    assert ran == [2, -1]
    cls()                               # freed with no finalizer again
    assert ran == [2, -1]


def test_a_del_set_on_the_class_may_detach_the_view_it_frees():
    """A __del__ that reads a view whose slot was replaced detaches it, which
    frees a parent only the view held, before the view itself is freed
    (make test-sanitize, whose ASan run sets PYTHONMALLOC=malloc, saw the
    parent read after that free)."""
    ran = []
    CowDict.__del__ = lambda self: ran.append(sorted(self))   # keys only: no view of self
    try:
        p = CowDict(a={"x": 1})
        v = p["a"]
        p["a"] = {"y": 2}                # v's container is no longer at its slot
        del p                            # v holds the parent alone
        del v
    finally:
        del CowDict.__del__
    assert ran == [["a"], ["x"]]         # the parent, freed inside the view's __del__


def test_walks_of_containers_nested_too_deep_raise_recursion_error():
    """==, hash and ordering walk nested containers recursively, up to 4,096
    levels: past that, heap containers raise RecursionError as dict's own
    walks do, not CorruptStoreError (no store is involved)."""
    assert _nested(CowDict, 4000) == _nested(CowDict, 4000)
    deep, other = _nested(CowDict, 5000), _nested(CowDict, 5000)
    with pytest.raises(RecursionError):
        deep == other
    with pytest.raises(RecursionError):
        hash(FrozenDict(deep))
    with pytest.raises(RecursionError):
        CowList([deep]) < CowList([other])


@pytest.mark.parametrize("n", [10, 100, 1000])
@pytest.mark.parametrize("target", [slice(5, 8), slice(5, 80), slice(None, None, 2),
                                    slice(None, None, -3)])
def test_slice_assignment_from_a_generator_that_changes_the_list(n, target):
    """The assigned generator runs before the slice is written, and may change
    the list: as list does, a simple slice is clamped to the new length and
    an extended one keeps the indices computed before (and the generator's
    own writes).  A shortened list read past its end here before."""
    def run(lst):
        def gen():
            if target.step is None:
                del lst[:35]
            else:
                lst.append(99)
            yield from range(len(range(n)[target]))
        try:
            lst[target] = gen()
        except ValueError as exc:
            return str(exc)
        return list(lst)

    assert run(CowList(range(n))) == run(list(range(n)))


def _outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:        # the type is what is compared
        return ("raised", type(exc))


@pytest.mark.parametrize("probe", [1, (1, 2, 3), [1, 2], (1, 2), (1, 3), (2, 1), ()])
def test_items_view_membership_and_set_operations_as_dict(probe):
    """Anything but a (key, value) pair is absent from items(), as dict_items
    says (collections.abc.ItemsView unpacks it: TypeError, ValueError, or a
    list found); the set operations, built on it, follow."""
    mine, theirs = CowDict({1: 2}).items(), {1: 2}.items()
    assert (probe in mine) == (probe in theirs)
    others = [{probe, (1, 2)}, [probe]] if not isinstance(probe, list) else [[probe]]
    for other in others:
        for op in (lambda a, o: a & set(o) if isinstance(o, set) else a & set(),
                   lambda a, o: a.isdisjoint(o),
                   lambda a, o: set(o) - a if isinstance(o, set) else a - set()):
            assert _outcome(lambda: op(mine, other)) == _outcome(lambda: op(theirs, other))


def test_view_mapping_is_a_read_only_proxy_as_dict_views_give():
    d = CowDict({1: 2})
    for view in (d.keys(), d.values(), d.items()):
        assert view.mapping == {1: 2}
        with pytest.raises(TypeError):
            view.mapping[3] = 4
    d[3] = 4
    assert d.keys().mapping[3] == 4            # live, as dict's is


@pytest.mark.parametrize("cls", [CowDict, FrozenDict])
def test_self_is_an_ordinary_keyword_key(cls):
    assert cls(self=1, other=2) == dict(self=1, other=2)
    if cls is CowDict:
        d = CowDict()
        d.__init__(self=3)
        assert d == {"self": 3}


@pytest.mark.parametrize("count", [2**64, -2**64, 2**62, 2**62 + 1, -3, 0, 3, True, 2.0, "2",
                                   None])
@pytest.mark.parametrize("items", [[], [1], [1, 2]])
def test_repeat_counts_raise_as_list_does(items, count):
    """A count that fits no index is OverflowError, a result list could not
    hold MemoryError, a non-int TypeError, all at once (this used to extend
    `count` times: an endless loop for a huge count)."""
    def repeat_in_place(lst):
        lst *= count
        return list(lst)

    for op in (lambda lst: list(lst * count), lambda lst: list(count * lst), repeat_in_place):
        assert _outcome(lambda: op(CowList(items))) == _outcome(lambda: op(list(items)))


@pytest.mark.parametrize("left", [set, frozenset])
@pytest.mark.parametrize("right", [CowSet, FrozenSet])
def test_a_builtin_set_on_the_left_keeps_its_mutability(left, right):
    """set |= FrozenSet(...) leaves a mutable set (set | frozenset is a set);
    frozenset | CowSet is frozen."""
    s = left({1})
    s |= right([2])
    assert s == {1, 2}
    assert isinstance(s, (set, CowSet)) == (left is set)
    for res in (left({1}) & right([1]), left({1}) - right([2]), left({1}) ^ right([2])):
        assert isinstance(res, (set, CowSet)) == (left is set)


def test_sets_compare_and_combine_with_dict_views_as_set_does():
    keys, items = {1: 2}.keys(), {1: 2}.items()
    assert CowSet([1]) == keys and keys == CowSet([1]) and FrozenSet([(1, 2)]) == items
    assert CowSet([1]) <= keys and CowSet([1, 5]) > keys
    assert CowSet([1, 3]) - keys == {3} and CowSet([3]) | keys == {1, 3}


@pytest.mark.parametrize("others", [([1],), ([1.0, 1],), ({True},), ({1: 0}.keys(),),
                                    (CowSet([True, 9, 8]),), ([1], {True})])
@pytest.mark.parametrize("start", [[True], [True, 3], [1.0, 3, 4, 5]])
def test_intersection_keeps_the_element_set_keeps(start, others):
    """Of two equal elements (1, 1.0, True) set.intersection keeps the one of
    the side it iterates: the smaller, or the other when not larger."""
    def shown(s):
        return sorted((type(x).__name__, x) for x in s)

    plain = [set(o) if isinstance(o, CowSet) else o for o in others]
    assert shown(CowSet(start).intersection(*others)) == shown(set(start).intersection(*plain))
    mine, theirs = CowSet(start), set(start)
    mine.intersection_update(*others)
    theirs.intersection_update(*plain)
    assert shown(mine) == shown(theirs)


@pytest.mark.parametrize("obj, call", [
    (FrozenSet([1]), lambda s: s.discard(1)), (FrozenSet([1]), lambda s: s.remove(5)),
    (FrozenSet([1]), lambda s: s.update([2])), (FrozenSet([1]), lambda s: s.difference_update()),
    (FrozenSet([1]), lambda s: s.intersection_update([1])),
    (FrozenSet([1]), lambda s: s.symmetric_difference_update([1])),
    (FrozenList([2, 1]), lambda s: s.sort()), (FrozenList(), lambda s: s.pop()),
    (FrozenList([1]), lambda s: s.remove(7)), (FrozenDict({1: 2}), lambda d: d.setdefault(1)),
])
def test_every_mutator_of_a_frozen_container_raises_frozen_error(obj, call):
    """Whatever the arguments (an existing key, an empty list, an absent
    item): the container is immutable first."""
    with pytest.raises(cowstore.FrozenError):
        call(obj)


def test_update_with_a_bad_keyword_value_changes_nothing():
    d = CowDict({1: 2})
    with pytest.raises(cowstore.UnsupportedTypeError):
        d.update({3: 4}, x=object())
    assert d == {1: 2}


@pytest.mark.parametrize("size", [0, 1, 5, 300])
def test_update_of_an_empty_dict_takes_the_entries_and_shares_nothing_visible(size):
    """An empty CowDict (fresh, emptied by clear or by deletes, or a view)
    updated from a dict or CowDict takes all its entries at once: the result
    is the source in its order, and neither side's later writes show in the
    other, nested containers included."""
    plain = {f"k{i}": {"n": [i]} for i in range(size)}
    src = CowDict(plain)
    emptied = CowDict({"gone": 1, **{f"x{i}": i for i in range(20)}})
    for k in list(emptied):
        del emptied[k]
    cleared = CowDict({"a": 1})
    cleared.clear()
    parent = CowDict({"inner": {}})
    for dst, source in ((CowDict(), plain), (CowDict(), src), (emptied, src), (cleared, plain),
                        (parent["inner"], src)):
        dst.update(source)
        assert dst == plain and list(dst) == list(plain)
        if size:
            dst["k0"]["n"].append("dst")
            assert src["k0"] == {"n": [0]} and plain["k0"] == {"n": [0]}
            src["k1" if size > 1 else "k0"]["n"].append("src")
            assert dst.get("k1", dst["k0"])["n"][-1] != "src"
            src.update(CowDict(plain))              # undo for the next round
    assert list(parent["inner"]) == list(plain)     # the view wrote back
    assert CowDict.fromkeys(range(size)) == dict.fromkeys(range(size))


def test_values_membership_survives_keys_deleted_meanwhile():
    """`x in d.values()` walked the keys and looked each up again, so a key
    deleted meanwhile (by another thread, or by a value's __eq__ as here)
    raised KeyError; dict_values compares the values it meets."""
    d = CowDict({i: i for i in range(50)})

    class DeletesOnCompare:
        def __eq__(self, other):
            d.popitem()                     # a key the walk has yet to reach
            return other == 30

    assert DeletesOnCompare() in d.values()
    assert 3 in d.values() and 45 not in d.values() and len(d) < 50


def test_an_unstorable_item_of_an_iterable_is_named_by_its_position():
    """Items of an iterator or of extend's argument were converted with no
    path: the error said '(at root)' for the third item of a generator."""
    cases = [(lambda: CowList(iter([1, 2, object()])), r"root\[2\]\)"),
             (lambda: CowList([1]).extend(x for x in [1, {"a": object()}]), r"root\[1\]\['a'\]\)"),
             (lambda: CowList([1]).extend((1, 2 ** 80, object())), r"root\[2\]\)"),
             (lambda: CowList([1]).append(object()), r"\(at root\)")]
    for make, where in cases:
        with pytest.raises(cowstore.UnsupportedTypeError, match=where):
            make()


@pytest.mark.parametrize("twin", [True, 1.0, 1])
@pytest.mark.parametrize("size", [3, 40])
def test_int_probes_find_equal_keys_of_other_types(twin, size):
    """d[1] and 1 in s take a fast walk that compares int keys as ints; a key
    equal to 1 stored as True or 1.0 must still be found (by the general
    path), in maps with and without a hash index."""
    plain = {twin: "one", **{i: i for i in range(2, size)}, 2**70: "big", -5: "neg"}
    d, s = cowstore.CowDict(plain), cowstore.CowSet(plain)
    for probe in (1, True, 1.0, 2, size - 1, -5, 2**70, 0, size, 2**64, -2**63):
        assert (probe in d) is (probe in plain), probe
        assert (probe in s) is (probe in plain), probe
        assert d.get(probe, "absent") == plain.get(probe, "absent"), probe
    assert d[1] == "one" and type(next(iter(d))) is type(twin)


@pytest.mark.parametrize("size", [2, 40])
def test_int_and_str_probes_find_keys_stored_as_extension_leaves(size):
    """The fast scan of a small map decides only an int key against an int
    probe and a str key against a str one: a Decimal key equal to an int
    is found by the general path (hypothesis found Decimal('-0') and 0
    stored as two keys)."""
    import decimal
    keys = [decimal.Decimal("-0"), decimal.Decimal("2.0"), "s", b"b", None]
    keys += list(range(10, 10 + size))
    plain = {k: i for i, k in enumerate(keys)}
    d, s = cowstore.CowDict(plain), cowstore.CowSet(plain)
    for probe in (0, 2, "s", 10, 11, 9, "t"):
        assert (probe in d) is (probe in plain), probe
        assert (probe in s) is (probe in plain), probe
        assert d.get(probe, "absent") == plain.get(probe, "absent"), probe
    d[0] = "zero"
    assert len(d) == len(plain) and type(next(iter(d))) is decimal.Decimal


def test_a_builtin_left_operand_gives_a_mutable_result():
    """dict | FrozenDict and list + FrozenList gave a frozen result, so a
    later write raised FrozenError; as dict | dict and list + list, the
    result is mutable (a CowDict, a CowList), as set | FrozenSet gives a
    CowSet."""
    merged = {"a": 1} | cowstore.FrozenDict({"b": 2})
    joined = [1] + cowstore.FrozenList([2])
    assert type(merged) is CowDict and merged == {"a": 1, "b": 2}
    assert type(joined) is cowstore.CowList and joined == [1, 2]
    merged["c"] = 3
    joined.append(3)
    assert type(set() | cowstore.FrozenSet([1])) is cowstore.CowSet
    assert type(cowstore.FrozenDict({1: 2}) | {3: 4}) is cowstore.FrozenDict   # the left's type
    assert type(cowstore.FrozenList([1]) + [2]) is cowstore.FrozenList


@pytest.mark.parametrize("pairs", [[(1, 2, 3)], [5], [(1, 2), "abc"], [(1, 2), "ab"], [[1]],
                                   [(1, 2), None]])
def test_update_from_pairs_refuses_a_bad_pair_as_dict_does(pairs):
    """update and |= with an iterable of pairs: a bad element raises dict's
    own error (type and message, naming its position), after the pairs
    before it are set."""
    def outcome(target):
        try:
            target.update(pairs)
        except (TypeError, ValueError) as e:
            return type(e), str(e), dict(target)
        return None, None, dict(target)
    assert outcome(CowDict()) == outcome({})


@pytest.mark.parametrize("size", [3, 40])
@pytest.mark.parametrize("key", ["k1", 1, -2**62])
def test_a_view_read_by_the_fast_walk_writes_back_under_its_key(size, key):
    """d[k] of a str or int key made the view of a nested container on the
    general path, after the fast walk had found it; the fast walk makes it
    now, keyed by the key as stored.  Writes through the view land in d
    under that key, for packed records and heap containers, with and
    without an index."""
    plain = {k: {"n": [k]} for k in range(-3, size)}
    plain.update({"k1": {"n": ["s"]}, -2**62: {"n": ["big"]}})
    d = CowDict(plain)
    d["heap"] = CowDict({i: i for i in range(20)})      # a value too big to pack
    view = d[key]
    view["n"].append("x")
    view["m"] = 1
    plain[key]["n"].append("x")
    plain[key]["m"] = 1
    assert d == {**plain, "heap": {i: i for i in range(20)}}
    inner = d["heap"]
    inner[0] = "changed"
    assert d["heap"][0] == "changed" and d.get(key) == plain[key]


# ---- strs read back -------------------------------------------------------------

ASCII_LENGTHS = [1, 2, 7, 8, 9, 14, 15, 16, 17, 63, 64, 65, 300]


def _ascii_strs():
    return ["".join(chr(33 + (i * 7 + j) % 94) for j in range(n))
            for i, n in enumerate(ASCII_LENGTHS)]


@pytest.mark.parametrize("source", ["heap dict", "frozen record", "list", "items", "thaw"])
def test_ascii_strs_read_back_are_plain_strs(source):
    """Short ASCII strs are laid out by the extension itself (convert.c
    alloc_ascii_str), not by PyUnicode_New: what comes back must be a str in
    every way Python can tell -- value, hash, size, methods, interning."""
    strs = _ascii_strs()
    if source == "heap dict":
        d = CowDict({s: s for s in strs})
        got = [d[s] for s in strs]
    elif source == "frozen record":
        recs = cowstore.freeze([{"k": s} for s in strs])
        got = [r["k"] for r in recs]
    elif source == "list":
        got = list(CowList(strs))
    elif source == "items":
        got = [k for k, v in CowDict({s: 0 for s in strs}).items()]
    else:
        got = cowstore.thaw(cowstore.freeze(strs))
    assert got == strs
    for s, g in zip(strs, got):
        assert type(g) is str and g.isascii() and len(g) == len(s)
        assert hash(g) == hash(s) and {g: 1}[s] == 1
        assert sys.getsizeof(g) == sys.getsizeof(s)
        assert g.encode() == s.encode() and (g + "é")[:-1] == s
        assert sys.intern(g) == s and g.upper() == s.upper()


def test_set_from_a_dict_takes_its_keys_as_set_does():
    """An exact dict is read in place (its keys, in order); a subclass is
    iterated as set() iterates it, its own __iter__ included."""
    d = {f"k{i}": i for i in (5, 3, 9, 1)}
    assert list(CowSet(d)) == list(d) and CowSet(d) == set(d)
    assert FrozenSet(d) == frozenset(d)

    class OwnIter(dict):
        def __iter__(self):
            return iter(["x", "y"])

    odd = OwnIter(a=1, b=2)
    assert set(odd) == {"x", "y"}
    assert CowSet(odd) == set(odd) and FrozenSet(odd) == frozenset(odd)
    o = object()
    with pytest.raises(TypeError) as from_dict:
        CowSet({o: 1})
    with pytest.raises(TypeError) as from_set:
        CowSet({o})
    assert "object" in str(from_dict.value) and str(from_dict.value) == str(from_set.value)


# Each kind of str, 20 of each: past the size a map is scanned without its
# hashes (COW_MAP_LINEAR_MAX), so a wrong hash would lose the key.
STR_KINDS = [f"{kind}{i}" for kind in ("ascii", "latin-1 é", "bmp ✓", "astral 🐍", "k" * 300)
             for i in range(20)] + [""]


@pytest.mark.parametrize("build", ["CowDict", "CowSet", "freeze", "setitem"])
def test_str_keys_of_every_kind_built_at_once_are_found(build):
    """Keys converted in bulk are hashed from their UTF-8 as they are
    converted (convert.c conv_str_hashed); the hash must be the one a lookup
    computes, for every kind of str, or the key is never found again."""
    src = {k: i for i, k in enumerate(STR_KINDS)}
    if build == "CowDict":
        m = CowDict(src)
    elif build == "CowSet":
        m = CowSet(src)
    elif build == "freeze":
        m = cowstore.freeze({"outer": src})["outer"]
    else:
        m = CowDict()
        for k, v in src.items():
            m[k] = v
    for k in STR_KINDS:
        probe = "".join(list(k))                # an equal str, another object
        assert probe in m
        if build != "CowSet":
            assert m[probe] == src[k]
    with pytest.raises(UnicodeEncodeError):
        (CowSet if build == "CowSet" else CowDict)({"lone \udc80": 1})
