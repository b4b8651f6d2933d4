"""numpy arrays as leaves: stored by value, read back as read-only views of
the store's mapped pages (zero-copy), kept alive by the value."""
import os

import numpy as np
import pytest

import cowstore

DTYPES = ["<f8", "<f4", "<i8", "<i2", "|u1", "|b1", "<c16"]


@pytest.fixture
def store(tmp_path):
    with cowstore.open(tmp_path / "arrays.cow") as s:
        yield s


def mapped_file_ranges(path):
    """(start, end) of every mapping of `path` in this process."""
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == real:
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                out.append((lo, hi))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_arrays_round_trip_with_dtype_and_shape(store, dtype):
    a = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    store["a"] = {"arr": a}
    got = store["a"]["arr"]
    assert got.dtype == a.dtype and got.shape == a.shape
    assert np.array_equal(got, a)


def test_stored_array_is_a_read_only_view_into_the_mapped_file(store):
    a = np.random.default_rng(1).random((256, 64))
    store["a"] = {"arr": a}
    first, second = store["a"]["arr"], store["a"]["arr"]
    assert not first.flags.writeable
    with pytest.raises(ValueError):
        first[0, 0] = 1.0
    assert np.shares_memory(first, second), "two reads must see the same bytes"
    ranges = mapped_file_ranges(store.path)
    addr = first.ctypes.data
    assert any(lo <= addr and addr + first.nbytes <= hi for lo, hi in ranges), \
        "the array's data must lie inside the store file's mapping"
    assert addr % 8 == 0


def test_array_outlives_the_store_handle_and_later_commits(store):
    a = np.arange(1000, dtype="<i8")
    store["a"] = [a]
    view = store["a"][0]
    store["a"] = [np.zeros(3)]          # replaced: the view keeps its snapshot
    store.close()
    assert np.array_equal(view, a)


def test_thaw_gives_a_writable_copy(store):
    a = np.arange(10.0)
    store["a"] = {"arr": a}
    plain = cowstore.thaw(store["a"])
    assert plain["arr"].flags.writeable
    plain["arr"][0] = 42.0
    assert store["a"]["arr"][0] == 0.0


def test_heap_containers_hold_arrays_by_value(store):
    a = np.arange(5)
    d = cowstore.CowDict(arr=a)
    a[0] = 99                           # the container took a copy
    assert d["arr"][0] == 0
    assert not d["arr"].flags.writeable


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([object()], dtype=object),
                                 np.zeros(2, dtype=[("x", "<i4"), ("y", "<f8")])])
def test_unsupported_dtypes_raise_before_anything_is_written(store, bad):
    store["keep"] = [1]
    with pytest.raises(cowstore.UnsupportedTypeError, match=r"dtype.*\(at root\['arr'\]\)"):
        store["x"] = {"arr": bad}
    assert store.names() == ["keep"]


def test_an_array_of_too_many_dimensions_is_refused_saying_so():
    """numpy 2 allows 64 dimensions; the message said 'an unusual shape'
    and named no path."""
    with pytest.raises(cowstore.UnsupportedTypeError,
                       match=r"more than 32 dimensions \(at root\[1\]\['x'\]\)"):
        cowstore.CowList([1, {"x": np.zeros((1,) * 33)}])


def test_arrays_are_unhashable_like_numpy(store):
    with pytest.raises(TypeError):
        cowstore.FrozenDict(a=np.arange(3))._hash()


def test_diff_compares_arrays_by_dtype_shape_and_bytes(tmp_path):
    with cowstore.open(tmp_path / "s.cow") as store:
        store["v1"] = {"same": np.arange(4), "data": [np.zeros(3)], "kind": np.zeros(2)}
        v2 = store["v1"].copy()
        v2["same"] = np.arange(4)                       # equal, freshly written
        v2["data"][0] = np.array([0.0, 1.0, 0.0])
        v2["kind"] = np.zeros(2, dtype=np.float32)      # equal values, other dtype
        store["v2"] = v2
        changes = {c.path: c for c in cowstore.diff(store["v1"], store["v2"])}
    assert set(changes) == {("data", 0), ("kind",)}
    assert changes[("data", 0)].new.tolist() == [0.0, 1.0, 0.0]


def test_a_zero_dimensional_array_keeps_its_shape(tmp_path):
    """np.ascontiguousarray makes a 0-d array 1-d; the shape stored is the
    array's own, so np.array(5.0) reads back 0-d and differs from [5.0]."""
    zero, one = np.array(5.0), np.array([5.0])
    with cowstore.open(str(tmp_path / "z.cow")) as s:
        s["z"] = {"z": zero}
        for got in (cowstore.freeze({"z": zero})["z"], s["z"]["z"]):
            assert got.shape == () and got.dtype == zero.dtype and got == 5.0
    assert cowstore.freeze({"z": zero}) != cowstore.freeze({"z": one})
    assert list(cowstore.diff(cowstore.freeze({"z": zero}), cowstore.freeze({"z": one})))
