"""Errors at the call that met them: a read of damaged stored bytes raises
CorruptStoreError from that very call -- not None, not an empty result -- and
never from a later, unrelated call, nor from a call in another thread.

Each test damages one known spot of a real store file: the code byte of one
key's item in a map's packed entry log (a code no item has, so decoding
fails when that entry is read), one field of a numpy leaf's header, or
one leaf of a map's hash index.
The spot is found by searching the file for the key's (or the header's)
bytes, which a one-commit store holds exactly once.
"""
import struct
import threading

import numpy as np
import pytest

import cowstore

KEYS = 40                   # past COW_MAP_LINEAR_MAX: lookups go through the hash index
DAMAGED = "key-00017"
SSTR_ITEM = 0x10            # cowstore/compact.h: + length, an inline str item
BAD_CODE = 0x0E             # cowstore/compact.h: no item has this code
THREAD_TIMEOUT = 30         # seconds; a hung thread fails the test instead of the run


def _patch(path, find, offset, new):
    """Writes `new` at `offset` from the one occurrence of `find` in the file."""
    with open(path, "r+b") as f:
        data = f.read()
        assert data.count(find) == 1, f"{find!r} occurs {data.count(find)} times"
        f.seek(data.index(find) + offset)
        f.write(new)


@pytest.fixture
def damaged(tmp_path):
    """A store whose root "d" maps KEYS keys to ints, the entry of DAMAGED
    unreadable; the store is open readonly, the file damaged before."""
    path = str(tmp_path / "damaged.cow")
    with cowstore.open(path) as s:
        s["d"] = {f"key-{i:05d}": i for i in range(KEYS)}
    raw = DAMAGED.encode()
    with open(path, "rb") as f:
        data = f.read()
    at = data.index(raw)
    assert data[at - 1] == SSTR_ITEM + len(raw), "not a str item of a packed leaf"
    _patch(path, raw, -1, bytes([BAD_CODE]))
    with cowstore.open(path, readonly=True) as s:
        yield s


def _unrelated_calls_are_clean(store):
    assert len(cowstore.CowList([1, 2, 3])) == 3
    assert cowstore.CowDict(a=1)["a"] == 1
    assert store["d"]["key-00001"] == 1           # the same store, a sound entry


READS = {
    "get": lambda d: d.get(DAMAGED),
    "getitem": lambda d: d[DAMAGED],
    "contains": lambda d: DAMAGED in d,
    "items": lambda d: list(d.items()),
    "thaw": lambda d: cowstore.thaw(d),
    "equal": lambda d: d == {f"key-{i:05d}": i for i in range(KEYS)},
}


@pytest.mark.parametrize("read", sorted(READS))
def test_a_damaged_entry_raises_at_the_read_that_met_it(damaged, read):
    """Every way of reading the damaged entry raises CorruptStoreError at that
    call (d.get used to return None, d[k] could say KeyError), and the next,
    unrelated calls raise nothing."""
    d = damaged["d"]
    with pytest.raises(cowstore.CorruptStoreError):
        READS[read](d)
    _unrelated_calls_are_clean(damaged)
    with pytest.raises(cowstore.CorruptStoreError):
        READS[read](d)                            # the same read fails again, alike


def _read_damaged(d):
    """What d.get(DAMAGED) raised, as a word (threads report to the test)."""
    try:
        d.get(DAMAGED)
    except cowstore.CorruptStoreError:
        return "CorruptStoreError"
    except Exception as e:                        # noqa: BLE001 -- reported to the test
        return repr(e)
    return "no error"


def _run_thread(target):
    t = threading.Thread(target=target)
    t.start()
    return t


def _join(t):
    t.join(THREAD_TIMEOUT)
    assert not t.is_alive(), "thread hung"


def test_a_read_error_in_a_worker_thread_is_raised_there_only(damaged):
    d = damaged["d"]
    worker = []
    _join(_run_thread(lambda: worker.append(_read_damaged(d))))
    assert worker == ["CorruptStoreError"]
    _unrelated_calls_are_clean(damaged)


def test_a_read_error_in_another_thread_does_not_reach_a_call_in_progress(damaged):
    """The main thread is inside lst.extend(generator) -- one call, paused in
    the generator -- while a worker reads the damaged entry: the worker's
    call raises, the main thread's call completes without an error."""
    d = damaged["d"]
    paused, worker_done = threading.Event(), threading.Event()
    worker = []

    def read_in_worker():
        try:
            assert paused.wait(THREAD_TIMEOUT)
            worker.append(_read_damaged(d))
        finally:
            worker_done.set()

    def items():
        yield 1
        paused.set()
        assert worker_done.wait(THREAD_TIMEOUT)
        yield 2

    t = _run_thread(read_in_worker)
    lst = cowstore.CowList()
    lst.extend(items())
    _join(t)
    assert list(lst) == [1, 2]
    assert worker == ["CorruptStoreError"]
    _unrelated_calls_are_clean(damaged)


# ---- numpy leaves -------------------------------------------------------------

SHAPE = (3, 4)
DTYPE, ITEM = b"<f8", 8
# cowstore/value.h: cow_ndarray_head is dtype[8], u32 ndim, u32 data_off,
# u64 nbytes; the u64 dimensions follow it, then the data.
NDIM_AT, DIMS_AT = 8, 24


def _leaf_bytes(array):
    """The bytes of the stored NDARRAY blob holding `array` (after its blob header)."""
    data_off = DIMS_AT + 8 * array.ndim
    head = DTYPE.ljust(8, b"\0") + struct.pack("<IIQ", array.ndim, data_off, ITEM * array.size)
    return head + struct.pack(f"<{array.ndim}Q", *array.shape) + array.tobytes()


HEADER_DAMAGE = {
    "dtype numpy does not know": (0, b"<f9\0"),
    "dtype not a dtype": (0, b"zz\0\0"),
    "dtype of another kind": (0, b"<U2\0"),
    "dtype of an object array": (0, b"|O8\0"),
    "dtype of another size": (0, b"<f4\0"),
    "a dimension changed": (DIMS_AT + 8, struct.pack("<Q", 5)),
    "ndim past numpy's limit": (NDIM_AT, struct.pack("<I", 99)),
}


@pytest.mark.parametrize("damage", sorted(HEADER_DAMAGE))
def test_a_damaged_numpy_header_raises_corrupt_store_error(tmp_path, damage):
    """A header field that no longer fits the array raises CorruptStoreError
    at the read -- never numpy's TypeError or ValueError, nor an array of
    other values -- and the next calls are clean."""
    path = str(tmp_path / "arrays.cow")
    array = np.arange(12, dtype="<f8").reshape(SHAPE)
    with cowstore.open(path) as s:
        s["a"] = {"arr": array, "ok": array + 1}
    offset, new = HEADER_DAMAGE[damage]
    _patch(path, _leaf_bytes(array), offset, new)
    with cowstore.open(path, readonly=True) as s:
        a = s["a"]
        with pytest.raises(cowstore.CorruptStoreError):
            a["arr"]
        assert len(cowstore.CowList([1, 2, 3])) == 3
        assert np.array_equal(a["ok"], array + 1)


def test_a_root_name_that_is_not_utf8_is_corruption(tmp_path):
    """Names are written from str only, so one that is not UTF-8 was damaged
    in LMDB's leaf page: names() raises CorruptStoreError, not a name with
    surrogates that fails later wherever it is printed or encoded."""
    path = str(tmp_path / "names.cow")
    with cowstore.open(path) as s, s.transaction():     # one commit: one leaf page
        s["a-root-name-to-damage"] = [1, 2]
        s["fine"] = 1
    _patch(path, b"a-root-name-to-damage", 0, b"\xff")
    with cowstore.open(path, readonly=True) as s:
        with pytest.raises(cowstore.CorruptStoreError, match="not UTF-8"):
            s.names()


# ---- index leaves -------------------------------------------------------------

INDEXED = 12                # entries: past COW_MAP_LINEAR_MAX, so the map has an index
HOLE = 5                    # the entry deleted before the store: a HOLE in the log
ADDED = range(1000, 1300)   # new keys: some land on the damaged leaf's slot
# map.c: a stored index node is u32 refcnt (COW_REFCNT_STORED), u16 kind
# (0: bitmap), u16 count, u32 datamap, u32 nodemap, a u64 word per child,
# then a u32 entry number per leaf.
HNODE = struct.Struct("<IHHII")
STORED = 0xFFFFFFFF


def _index_leaf_to_hole(path):
    """Points a leaf of the stored index (of the one map in path, whose entry
    HOLE is deleted) at that hole, which no sound index names (map.c H3)."""
    with open(path, "rb") as f:
        data = f.read()
    live, nodes = set(range(INDEXED)) - {HOLE}, []
    for at in range(0, len(data) - HNODE.size, 4):
        refcnt, kind, count, datamap, nodemap = HNODE.unpack_from(data, at)
        if refcnt != STORED or kind or count or not datamap:
            continue
        leaves_at = at + HNODE.size + 8 * bin(nodemap).count("1")
        leaves = struct.unpack_from(f"<{bin(datamap).count('1')}I", data, leaves_at)
        if set(leaves) <= live and len(set(leaves)) == len(leaves):
            nodes.append((len(leaves), leaves_at))
    most, leaves_at = max(nodes)         # the root: the others hold 1 or 2 leaves
    assert most >= 3, nodes
    with open(path, "r+b") as f:
        f.seek(leaves_at)
        f.write(struct.pack("<I", HOLE))


INSERTS = {
    "set add": (lambda: cowstore.CowSet(range(INDEXED)), lambda s, x: s.copy().add(x)),
    "set union": (lambda: cowstore.CowSet(range(INDEXED)), lambda s, x: s | cowstore.CowSet([x])),
    "set update": (lambda: cowstore.CowSet(range(INDEXED)), lambda s, x: s.copy().update({x})),
    "dict setitem": (lambda: cowstore.CowDict((i, i) for i in range(INDEXED)),
                     lambda d, x: d.copy().__setitem__(x, x)),
}


@pytest.fixture
def damaged_pages_written():
    """Writes to copies of damaged maps carry the damage into heap nodes,
    which a debug build's check after each write (COW_DEBUG) reports as a
    broken invariant: those checks are off while such a test runs."""
    was = cowstore._cowstore._debug_checks(False)
    yield
    cowstore._cowstore._debug_checks(was)


@pytest.mark.usefixtures("damaged_pages_written")
@pytest.mark.parametrize("insert", sorted(INSERTS))
def test_an_index_leaf_naming_a_hole_is_corruption(tmp_path, insert):
    """A damaged index leaf naming a deleted entry: a key added where it lies
    pushes it down a level, which hashed the hole's key and raised
    UnsupportedTypeError ("wrong value type"; found by the fuzzer's set
    algebra, `stored | other`).  It raises CorruptStoreError, and the next
    calls are clean."""
    make, add = INSERTS[insert]
    path = str(tmp_path / "index.cow")
    value = make()
    value.discard(HOLE) if isinstance(value, cowstore.CowSet) else value.pop(HOLE)
    with cowstore.open(path) as s:
        s["m"] = value
    _index_leaf_to_hole(path)
    with cowstore.open(path, readonly=True) as s:
        m, met = s["m"], 0
        for x in ADDED:
            try:
                add(m, x)
            except cowstore.CorruptStoreError:
                met += 1
        assert met, "no added key reached the damaged leaf"
        assert len(cowstore.CowList([1, 2, 3])) == 3
        assert len(m) == INDEXED - 1


@pytest.mark.parametrize("kind", ["set", "dict"])
def test_a_key_whose_index_leaf_names_a_hole_is_corruption_not_absent(tmp_path, kind):
    """The same damage seen by lookups: the live key whose leaf now names the
    hole read as absent (`k in s` False while iterating s gives k).  Each
    lookup finds its key or raises CorruptStoreError, on the stored map and
    on a copy whose path was copied to the heap."""
    make = INSERTS["set add" if kind == "set" else "dict setitem"][0]
    path = str(tmp_path / "index.cow")
    value = make()
    value.discard(HOLE) if kind == "set" else value.pop(HOLE)
    with cowstore.open(path) as s:
        s["m"] = value
    _index_leaf_to_hole(path)
    with cowstore.open(path, readonly=True) as s:
        m = s["m"]
        for target in (m, m.copy()):
            met = 0
            for k in set(range(INDEXED)) - {HOLE}:
                try:
                    assert k in target and (kind == "set" or target[k] == k)
                except cowstore.CorruptStoreError:
                    met += 1
            assert met == 1, met             # the one key the damaged leaf named
