"""A Store is a collections.abc.MutableMapping of root names, as shelve and
dbm users expect: the whole protocol, each method beside a dict's outcome,
and the methods that change several roots in one transaction."""
import collections.abc

import pytest

import cowstore
from cowstore import thaw


@pytest.fixture
def store(tmp_path):
    s = cowstore.open(str(tmp_path / "m.cow"))
    yield s
    s.close()


def plain(value):
    return thaw(value) if isinstance(value, (cowstore.CowDict, cowstore.CowList,
                                             cowstore.CowSet)) else value


def contents(store):
    return {name: plain(value) for name, value in store.items()}


def test_a_store_is_a_mutable_mapping(store):
    assert isinstance(store, collections.abc.MutableMapping)
    assert isinstance(store, collections.abc.Mapping)
    assert issubclass(cowstore.Store, collections.abc.MutableMapping)


def test_every_mapping_method_matches_a_dict(store):
    model = {}
    for target in (store, model):
        target["a"] = {"x": [1, 2]}
        target.update({"b": 2}, c=3)
        target.update([("d", 4)])
    assert contents(store) == model
    assert list(store) == list(store.keys()) == sorted(model) == store.names()
    assert [plain(v) for v in store.values()] == [model[k] for k in sorted(model)]
    assert len(store) == len(model) == 4
    assert store.get("zz") is None and store.get("zz", 0) == 0
    assert plain(store.pop("a")) == model.pop("a")
    assert store.pop("a", "gone") == model.pop("a", "gone") == "gone"
    with pytest.raises(KeyError):
        store.pop("a")
    assert store.setdefault("b", 9) == model.setdefault("b", 9) == 2
    assert store.setdefault("e", 5) == model.setdefault("e", 5) == 5
    assert contents(store) == model
    name, value = store.popitem()
    assert model.pop(name) == value and name not in store
    assert store == model and not (store != model)
    store.clear()
    model.clear()
    assert len(store) == 0 and store == {}
    with pytest.raises(KeyError):
        store.popitem()


def test_a_value_popped_stays_readable(store):
    store["rows"] = [{"id": i} for i in range(2000)]
    rows = store.pop("rows")
    store["other"] = list(range(50_000))        # later commits may reuse the pages
    assert rows[1999] == {"id": 1999} and len(rows) == 2000


def test_methods_changing_several_roots_are_all_or_nothing(store):
    store["keep"] = 1

    def pairs():
        yield "a", 1
        yield "b", object()                 # refused before anything is committed
    with pytest.raises(cowstore.UnsupportedTypeError):
        store.update(pairs())
    assert store.names() == ["keep"]
    with pytest.raises(TypeError):
        store.update({"c": 1, 5: 2})
    assert store.names() == ["keep"]


def test_clear_leaves_the_reserved_roots_of_an_import(store):
    store["a"] = 1
    store["\x00import"] = [1]
    store.clear()
    assert store.names() == [] and store.reserved_names() == ["\x00import"]


@pytest.mark.parametrize("name", [5, None, b"a", ("a",)])
def test_non_str_keys_are_absent_as_in_a_mapping(store, name):
    assert (name in store) is False and store.get(name, "d") == "d"
    with pytest.raises(KeyError):
        store[name]
    with pytest.raises(TypeError) as info:
        store[name] = 1
    assert "_put" not in str(info.value) and "root names are str" in str(info.value)


def test_a_readonly_store_refuses_the_mutating_methods(tmp_path):
    path = str(tmp_path / "r.cow")
    with cowstore.open(path) as s:
        s["a"] = 1
    with cowstore.open(path, readonly=True) as s:
        for op in (lambda: s.pop("a"), lambda: s.popitem(), lambda: s.update(b=1),
                   lambda: s.setdefault("c", 1), lambda: s.clear()):
            with pytest.raises(cowstore.ReadonlyStoreError):
                op()
        assert s.names() == ["a"] and s["a"] == 1


def test_a_closed_store_raises_store_error(store):
    store.close()
    for op in (lambda: store["a"], lambda: 5 in store, lambda: store.values()):
        with pytest.raises(cowstore.StoreError):
            op()
