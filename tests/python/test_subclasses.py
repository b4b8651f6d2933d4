"""Users' subclasses of the containers behave as subclasses of dict, list and
set do (cowstore/_subclass.py): what makes a new container gives the
package's own type without calling the subclass's __init__; copy, deepcopy
and pickle keep the class and its attributes; __missing__ answers d[k]."""
import copy
import pickle

import pytest

from cowstore import CowDict, CowList, CowSet, FrozenDict, FrozenList, FrozenSet


def _tagged(base):
    """A subclass whose __init__ takes a required tag first, as users write."""
    class Tagged(base):
        def __init__(self, tag, *args):
            super().__init__(*args)
            self.tag = tag
    Tagged.__qualname__ = Tagged.__name__ = f"Tagged{base.__name__}"
    globals()[Tagged.__name__] = Tagged     # picklable by reference
    return Tagged


BASES = [CowDict, FrozenDict, CowList, FrozenList, CowSet, FrozenSet]
TAGGED = {base: _tagged(base) for base in BASES}
CONTENT = {CowDict: {1: 2}, FrozenDict: {1: 2}, CowList: [1, 2], FrozenList: [1, 2],
           CowSet: {1, 2}, FrozenSet: {1, 2}}
PLAIN = {CowDict: dict, FrozenDict: dict, CowList: list, FrozenList: list, CowSet: set,
         FrozenSet: set}


@pytest.mark.parametrize("base", BASES)
def test_a_new_container_made_from_a_subclass_is_the_package_type(base):
    """dict | {}, list + [], set algebra, copy() and slices on a builtin's
    subclass give the builtin; here the package's type, and the subclass's
    __init__ (which wants a tag) is never called with the result.  With a
    builtin on the left ({} | obj), the mutable type (CowDict, CowList,
    CowSet), as the builtin's own result is mutable."""
    obj = TAGGED[base]("t", CONTENT[base])
    if base in (CowDict, FrozenDict):
        made = [obj | {3: 4}, obj.copy()]
        reflected = {3: 4} | obj
    elif base in (CowList, FrozenList):
        made = [obj + [3], obj * 2, 2 * obj, obj[:1], obj.copy()]
        reflected = [0] + obj
    else:
        made = [obj | {3}, obj & {1}, obj - {1}, obj ^ {3}, obj.union([5]),
                obj.intersection([1]), obj.difference([1]), obj.symmetric_difference([9]),
                obj.copy()]
        reflected = {3} | obj
    for new in made:
        assert type(new) is base, new
    # a builtin on the left: mutable, as the builtin's own result is
    assert type(reflected) is {dict: CowDict, list: CowList, set: CowSet}[PLAIN[base]]
    assert PLAIN[base](made[0]) == PLAIN[base](
        {CowDict: {1: 2, 3: 4}, FrozenDict: {1: 2, 3: 4}, CowList: [1, 2, 3],
         FrozenList: [1, 2, 3], CowSet: {1, 2, 3}, FrozenSet: {1, 2, 3}}[base])


@pytest.mark.parametrize("how", ["copy", "deepcopy"] + [f"pickle {p}" for p in range(6)])
@pytest.mark.parametrize("base", BASES)
def test_copies_and_pickles_of_a_subclass_keep_its_class_and_attributes(base, how):
    """As copy and pickle treat a dict subclass: the class and the __dict__
    kept (deepcopy copies it deeply), the contents whole, and the subclass's
    __init__ not called (it would want its tag)."""
    obj = TAGGED[base]("t", CONTENT[base])
    obj.extra = ["mutable"]
    if how == "copy":
        got = copy.copy(obj)
    elif how == "deepcopy":
        got = copy.deepcopy(obj)
    else:
        got = pickle.loads(pickle.dumps(obj, protocol=int(how.split()[1])))
    assert type(got) is type(obj) and got is not obj
    assert PLAIN[base](got) == PLAIN[base](CONTENT[base])
    assert got.tag == "t" and got.extra == ["mutable"]
    assert (got.extra is obj.extra) == (how == "copy")


def _slotted(base):
    class Slotted(base):
        __slots__ = ("x",)
    Slotted.__qualname__ = Slotted.__name__ = f"Slotted{base.__name__}"
    globals()[Slotted.__name__] = Slotted
    return Slotted


def _stateful(base):
    class Stateful(base):
        def __getstate__(self):
            return {"state": "custom"}

        def __setstate__(self, state):
            self.restored = state
    Stateful.__qualname__ = Stateful.__name__ = f"Stateful{base.__name__}"
    globals()[Stateful.__name__] = Stateful
    return Stateful


SLOTTED = {base: _slotted(base) for base in BASES}
STATEFUL = {base: _stateful(base) for base in BASES}


@pytest.mark.parametrize("how", ["copy", "deepcopy"] + [f"pickle {p}" for p in range(6)])
@pytest.mark.parametrize("base", BASES)
def test_slots_and_a_subclass_own_getstate_are_kept(base, how):
    """Slot values were dropped, and a class's own __getstate__ and
    __setstate__ never called: copy and pickle read only the __dict__."""
    def again(obj):
        if how == "copy":
            return copy.copy(obj)
        if how == "deepcopy":
            return copy.deepcopy(obj)
        return pickle.loads(pickle.dumps(obj, protocol=int(how.split()[1])))
    slotted = SLOTTED[base](CONTENT[base])
    slotted.x = 42
    got = again(slotted)
    assert type(got) is type(slotted) and got.x == 42
    assert PLAIN[base](got) == PLAIN[base](CONTENT[base])
    got = again(STATEFUL[base](CONTENT[base]))
    assert got.restored == {"state": "custom"}


def test_a_subclass_own_reduce_and_copy_are_kept():
    class Own(CowDict):
        def __reduce__(self):
            return (dict, (dict(self),))

        def __copy__(self):
            return "own copy"

    assert pickle.loads(pickle.dumps(Own({1: 2}))) == {1: 2}
    assert copy.copy(Own()) == "own copy"


def test_a_subclass_that_is_copied_keeps_its_self_references():
    obj = TAGGED[CowList]("t", [1])
    obj.me = obj
    twin = copy.deepcopy(obj)
    assert twin.me is twin and list(twin) == [1]


@pytest.mark.parametrize("base", [CowDict, FrozenDict])
def test_missing_answers_an_absent_key_as_on_a_dict_subclass(base):
    """d[k] calls the subclass's __missing__, also through
    super().__getitem__; get, in and items() do not, as with dict."""
    asked = []

    class Defaulting(base):
        def __missing__(self, key):
            asked.append(key)
            return f"default {key}"

    class Override(Defaulting):
        def __getitem__(self, key):
            return "<" + super().__getitem__(key) + ">"

    d = Defaulting({"a": "x"})
    assert d["a"] == "x" and d["b"] == "default b" and asked == ["b"]
    assert d.get("c") is None and "c" not in d and ("c", "default c") not in d.items()
    assert asked == ["b"]
    assert Override()["z"] == "<default z>"
    with pytest.raises(KeyError):
        base()["absent"]
