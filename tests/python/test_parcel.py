"""Parcels (cowstore.parcel / open_parcel) and pickle protocol 5.

What is checked: every container kind, heap and store-backed, round trips
through a parcel and through pickle protocol 5 with a buffer_callback (one
read-only out-of-band buffer, a small in-band part), read in place from the
caller's buffer (bytes, bytearray, mmap, an unaligned memoryview), with or
without its store file; protocols <= 4 and multiprocessing keep the older
forms; a parcel lives as long as any value read from it; hostile parcels
raise CorruptStoreError, never crash (a subprocess runs the fuzz cases).
"""
import gc
import mmap
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import cowstore
from cowstore import (CowDict, CowList, CowSet, FrozenDict, FrozenList, FrozenSet, freeze,
                      thaw)
from cowstore import _cowstore

IN_BAND_MAX = 200           # bytes of a protocol-5 pickle besides its buffer
FUZZ_CASES = int(os.environ.get("COWSTORE_PARCEL_FUZZ_CASES", "400"))
FUZZ_SEED = int(os.environ.get("COWSTORE_PARCEL_FUZZ_SEED", "20261204"))


def _data(n=200):
    return {"rows": [{"id": i, "name": f"row-{i}", "tags": {f"t{i % 3}"}, "v": [i, i * 1.5, None],
                      "big": 7 ** (i % 40), "blob": b"\x00\xff" * (i % 20)} for i in range(n)],
            "meta": ("tuple", 1, 2 ** 70), "long": "λ" * 500}


KINDS = [
    lambda: freeze(_data()),
    lambda: FrozenDict(freeze(_data())),
    lambda: CowList(freeze(_data())["rows"]),
    lambda: FrozenList(freeze(_data())["rows"]),
    lambda: CowSet(range(500)),
    lambda: FrozenSet(f"s{i}" for i in range(500)),
]


def _open_count():
    return _cowstore._open_parcels()


@pytest.mark.parametrize("make", KINDS)
def test_parcel_round_trip_every_kind(make):
    value = make()
    data = cowstore.parcel(value)
    assert isinstance(data, bytes)
    back = cowstore.open_parcel(data)
    assert type(back) is type(value) and back == value and thaw(back) == thaw(value)


@pytest.mark.parametrize("make", KINDS)
def test_pickle5_sends_one_read_only_buffer_out_of_band(make):
    value = make()
    buffers = []
    p = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    assert len(p) < IN_BAND_MAX and len(buffers) == 1
    raw = buffers[0].raw()
    assert raw.readonly and raw.nbytes > 1000
    back = pickle.loads(p, buffers=buffers)
    assert type(back) is type(value) and back == value
    # without a callback the same parcel travels in-band
    assert pickle.loads(pickle.dumps(value, protocol=5)) == value


def test_protocol_4_keeps_plain_contents_for_heap_values():
    value = freeze(_data(20))
    p = pickle.dumps(value, protocol=4)
    assert b"COWPRCL1" not in p and pickle.loads(p) == value


def test_values_are_read_in_place_from_the_callers_buffer():
    value = freeze(_data())
    data = bytearray(cowstore.parcel(value))
    back = cowstore.open_parcel(data)
    assert back["rows"][7]["name"] == "row-7"
    with pytest.raises(BufferError):        # the parcel holds the bytearray's buffer
        data.append(0)
    del back
    data.append(0)                          # released with the last value


def test_unaligned_and_mmap_buffers(tmp_path):
    value = freeze(_data())
    data = cowstore.parcel(value)
    shifted = memoryview(b"\x00" * 3 + data)[3:]
    assert cowstore.open_parcel(shifted) == value
    path = tmp_path / "value.parcel"
    path.write_bytes(data)
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    back = cowstore.open_parcel(m)
    assert back == value
    del back
    m.close()


def test_a_parcel_lives_while_any_value_read_from_it_does():
    before = _open_count()
    back = cowstore.open_parcel(cowstore.parcel(freeze(_data())))
    row = back["rows"][150]
    tags = row["tags"]
    assert _open_count() == before + 1
    del back, row
    assert _open_count() == before + 1 and tags == {"t0"}
    del tags
    assert _open_count() == before


def test_a_parcel_value_is_copy_on_write():
    back = cowstore.open_parcel(cowstore.parcel(freeze(_data(50))))
    snap = back.copy()
    back["rows"][3]["name"] = "changed"
    back["new"] = 1
    assert back["rows"][3]["name"] == "changed" and snap["rows"][3]["name"] == "row-3"
    assert "new" not in snap


def test_scalars_and_numpy_arrays():
    np = pytest.importorskip("numpy")
    for x in (None, 5, 2 ** 100, "a long string, long enough for a blob", b"b" * 40, (1, "x")):
        assert cowstore.open_parcel(cowstore.parcel(x)) == x
    back = cowstore.open_parcel(cowstore.parcel(freeze({"a": np.arange(1000.0)})))
    arr = back["a"]
    del back
    assert not arr.flags.writeable and arr.sum() == 499500.0


class Sub(CowDict):
    pass


def test_subclasses_and_views_pickle_by_parcel():
    sub = Sub({"a": [1, 2, 3]})
    view = sub["a"]
    for obj in (sub, view):
        buffers = []
        back = pickle.loads(pickle.dumps(obj, 5, buffer_callback=buffers.append), buffers=buffers)
        assert type(back) is type(obj) and back == obj


def test_store_backed_value_travels_without_its_file(tmp_path):
    path = str(tmp_path / "data.cow")
    store = cowstore.open(path)
    store["v"] = _data()
    value = store["v"]
    buffers = []
    p5 = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    p4 = pickle.dumps(value, protocol=4)
    assert len(p5) < IN_BAND_MAX and len(p4) < 1024       # p4: a reference to the file
    want = thaw(value)
    del value
    store.close()
    for name in os.listdir(tmp_path):
        os.remove(tmp_path / name)
    back = pickle.loads(p5, buffers=[bytes(b.raw()) for b in buffers])
    assert thaw(back) == want
    with pytest.raises(cowstore.StoreError):
        pickle.loads(p4)


def test_multiprocessing_pickler_keeps_references(tmp_path):
    from multiprocessing.reduction import ForkingPickler
    store = cowstore.open(str(tmp_path / "data.cow"))
    store["v"] = _data()
    p = bytes(ForkingPickler.dumps(store["v"], 5))
    assert len(p) < 1024 and thaw(pickle.loads(p)) == thaw(store["v"])


def test_not_a_parcel_raises_corrupt_store_error():
    for junk in (b"", b"x" * 100, b"COWPRCL1" + b"\x00" * 200):
        with pytest.raises(cowstore.CorruptStoreError):
            cowstore.open_parcel(junk)
    with pytest.raises(TypeError):
        cowstore.open_parcel("not a buffer")


_FUZZ = textwrap.dedent("""
    import random, sys
    import cowstore
    from cowstore import freeze, thaw
    seed, cases = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    value = freeze({"rows": [{"id": i, "s": "x" * (i % 30), "l": list(range(i % 7)),
                              "b": 3 ** (i % 50)} for i in range(300)], "set": set(range(100))})
    data = cowstore.parcel(value)
    detected = 0
    for case in range(cases):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 12)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        try:
            back = cowstore.open_parcel(bytes(buf))
            thaw(back); back == value
            if isinstance(back, cowstore.CowDict):      # damage may change the root's type
                for k in list(back)[:50]:
                    back.get(k)
        except cowstore.CorruptStoreError:
            detected += 1
        except (cowstore.CowstoreError, UnicodeDecodeError, ValueError, TypeError, KeyError):
            detected += 1
    print(detected)
""")


def test_hostile_parcels_never_crash():
    """Random flips in a parcel: every case ends in a clean result or a
    cowstore error, in a subprocess (a crash would be a signal)."""
    seed = FUZZ_SEED
    run = subprocess.run([sys.executable, "-c", _FUZZ, str(seed), str(FUZZ_CASES)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (f"seed {seed}: exit {run.returncode}\n{run.stderr[-2000:]}")
    assert int(run.stdout) > FUZZ_CASES // 20, f"seed {seed}: too few corruptions detected"


@pytest.mark.parametrize("version", [3, 5])
def test_a_parcel_of_another_version_says_so(version):
    """A client and its workers running different cowstore versions got
    'corrupt stored data', as for random bytes."""
    data = bytearray(cowstore.parcel(freeze({"a": [1, 2, 3]})))
    data[8:12] = version.to_bytes(4, "little")      # after the 8-byte magic
    with pytest.raises(cowstore.CorruptStoreError, match=f"format {version}.*another version"):
        cowstore.open_parcel(bytes(data))
    with pytest.raises(cowstore.CorruptStoreError) as damaged:
        cowstore.open_parcel(b"not a parcel at all, but long enough to be read" * 2)
    assert "version" not in str(damaged.value)


def test_too_many_open_parcels_is_a_clean_error():
    data = cowstore.parcel(freeze({"a": [1, 2, 3]}))
    held = []
    with pytest.raises(cowstore.CowOverflowError):
        for _ in range(200):
            held.append(cowstore.open_parcel(data))
    assert len(held) > 50 and all(v == {"a": [1, 2, 3]} for v in held)
    held.clear()
    assert cowstore.open_parcel(data) == {"a": [1, 2, 3]}


class Rows(CowDict):
    """A user's subclass: rebuilt from its parcel by CowDict's init."""


class FrozenRows(FrozenDict):
    pass


@pytest.mark.parametrize("cls, sub", [(CowDict, Rows), (FrozenDict, FrozenRows)])
def test_a_container_made_from_a_parcel_value_releases_it(cls, sub):
    """CowDict(v) gave its result a header of its own but kept the hold it
    had taken on v: every CowDict(open_parcel(..)) left the parcel open,
    and a subclass unpickled at protocol 5 (rebuilt that way) ran out of
    parcels after 127 round trips."""
    before = _open_count()
    data = cowstore.parcel(freeze({"a": [1, 2, 3]}))
    assert cls(cowstore.open_parcel(data)) == {"a": [1, 2, 3]}
    for _ in range(200):
        buffers = []
        pickled = pickle.dumps(sub(a=[1]), 5, buffer_callback=buffers.append)
        assert pickle.loads(pickled, buffers=buffers) == {"a": [1]}
    gc.collect()
    assert _open_count() == before


# Run in fresh processes, each from the same start: the maker sends a
# parcel, the checker replaces its own container with the parcel's.
_MAKE_SAME = ("import cowstore, sys; "
              "sys.stdout.buffer.write(cowstore.parcel(cowstore.CowDict({'x': [1, 2]})))")
_CHECK_SAME = textwrap.dedent("""
    import subprocess, sys, cowstore
    made = subprocess.run([sys.executable, "-c", sys.argv[1]], capture_output=True, check=True)
    d = cowstore.CowDict({"x": [1, 2]})
    view = d["x"]
    d["x"] = cowstore.open_parcel(made.stdout)["x"]
    view.append("through the old view")
    print(d == {"x": [1, 2]})
""")


def test_a_container_from_another_process_does_not_pass_for_a_local_one():
    """Identities were counted from 0 in every process, so the same steps in
    another process gave a container the identity of the local one it
    replaced, and a view of the old one wrote into it."""
    run = subprocess.run([sys.executable, "-c", _CHECK_SAME, _MAKE_SAME],
                         capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["True"]


def test_a_forked_child_does_not_repeat_its_parents_identities():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, cowstore.parcel(CowDict({"x": [1, 2]})))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    d = CowDict({"x": [1, 2]})
    view = d["x"]
    d["x"] = cowstore.open_parcel(data)["x"]
    view.append(3)
    assert d == {"x": [1, 2]}


def test_a_pickle_of_many_small_containers_loads():
    """Each container pickled at protocol 5 was a parcel, and each opened
    parcel holds one of 127 slots: a list of 200 records pickled and could
    never be loaded (Ray pickles results so).  Small ones go by value."""
    records = [CowDict({"id": i, "tags": FrozenList(["a"])}) for i in range(300)]
    big = CowList(range(5000))
    back = pickle.loads(pickle.dumps([records, big], pickle.HIGHEST_PROTOCOL))
    assert back == [records, big] and type(back[0][7]["tags"]) is FrozenList
    buffers = []
    pickle.dumps(big, 5, buffer_callback=buffers.append)
    assert len(buffers) == 1                # a big one still goes as its parcel
    records = freeze([{f"f{j}": "x" * 20 for j in range(32)} for _ in range(250)])
    pickle.dumps(records, 5, buffer_callback=buffers.append)
    assert len(buffers) == 2                # packed records count by their fields


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_nested_frozen_containers_keep_their_types_in_every_pickle(protocol):
    """Below protocol 5 a container pickled as its thawed contents, so the
    frozen containers inside it came back mutable."""
    value = CowDict({"l": FrozenList([1, FrozenDict({"q": (1, FrozenList([2]))})]),
                     "s": CowSet([1, FrozenList([2])]), "f": FrozenSet([3]),
                     "m": [FrozenDict({"k": 1})]})
    back = pickle.loads(pickle.dumps(value, protocol))
    assert back == value
    assert [type(x) for x in (back["l"], back["l"][1], back["l"][1]["q"][1], back["f"],
                              back["m"], back["m"][0])] == [
        FrozenList, FrozenDict, FrozenList, FrozenSet, CowList, FrozenDict]
    assert FrozenList([2]) in back["s"]


def test_a_parcel_value_can_be_committed_to_a_store(tmp_path):
    back = cowstore.open_parcel(cowstore.parcel(freeze(_data(50))))
    store = cowstore.open(str(tmp_path / "from-parcel.cow"))
    store["v"] = back
    del back
    assert thaw(store["v"]) == thaw(freeze(_data(50)))


def test_nesting_past_the_limit_is_a_clear_error():
    """A parcel is written as a store's segments are: 256 levels of general
    containers at most (int keys keep them general), refused by name."""
    deep = 1
    for _ in range(300):
        deep = {0: deep}
    with pytest.raises(cowstore.CowOverflowError, match="nested this deep: a parcel"):
        cowstore.parcel(deep)
    with pytest.raises(cowstore.CowOverflowError, match="nested this deep: a parcel"):
        pickle.dumps(cowstore.freeze(deep), protocol=5)
