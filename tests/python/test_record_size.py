"""Bytes per record stay under a stated bound (issue 10's size regression test).

The records are bench/records.py's seeded JSON-like records, the ones
bench/bench_records.py measures at 200,000; here 5,000, so the whole file runs
in well under a second.  The heap figure is tracemalloc's count of what
`cowstore.freeze(records)` keeps alive; the store figure is the pages LMDB uses
(`stats()['file_bytes']`) after committing the records to a new store.

Issue 10's goals are heap and store file each ≤ msgpack's bytes per record
(~74 B here; the moonshot is Arrow's in-memory table, ~55 B).  Both meet
it, and two tests hold them there when msgpack is installed (the test
extra installs it).  The bounds below are what the code measured plus 5%,
so a change that grows records fails here; a change that shrinks them
should lower the bounds to its own figures + 5%.
"""
import gc
import importlib.util
import os
import re
import tracemalloc

import pytest

import cowstore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("records", os.path.join(ROOT, "bench", "records.py"))
R = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(R)

N = 5_000
# Measured on 2026-12-04 with the records of each vector leaf batched into
# one node (pack.h P6) and the strs they repeat written by word (P7): heap
# 53.6 B/record (msgpack 73.8, Arrow ~55), store file 63.1 B/record with
# segments filled best fit (segments 54.2; the rest is LMDB's pages and
# B-trees and the room pages keep, a larger share at 5,000 records than at
# 200,000).  Bound = + 5%.
HEAP_BYTES_PER_RECORD_MAX = 56.3
FILE_BYTES_PER_RECORD_MAX = 66.3


@pytest.fixture(scope="module")
def data():
    return R.records(N)


def msgpack_note(per_record, data):
    """', N x msgpack's M B/record' when msgpack is installed, else ''."""
    try:
        import msgpack
    except ImportError:
        return ""
    theirs = len(msgpack.packb(data)) / N
    return f", {per_record / theirs:.2f}x msgpack's {theirs:.1f} B/record"


def built_measured(build):
    """(what build() returns, the heap bytes it keeps alive by tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        built = build()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return built, used


def freeze_measured(data):
    """(cowstore.freeze(data), the heap bytes it keeps alive)."""
    return built_measured(lambda: cowstore.freeze(data))


def test_heap_bytes_per_record(data):
    frozen, used = freeze_measured(data)
    assert len(frozen) == N
    per = used / N
    assert per <= HEAP_BYTES_PER_RECORD_MAX, (
        f"cowstore heap {per:.1f} B/record > bound {HEAP_BYTES_PER_RECORD_MAX}"
        + msgpack_note(per, data))


def test_store_file_bytes_per_record(data, tmp_path):
    with cowstore.open(str(tmp_path / "records.cow"), durable=False) as store:
        store["ds"] = data
        stats = store.stats()
    per = stats["file_bytes"] / N
    assert per <= FILE_BYTES_PER_RECORD_MAX, (
        f"cowstore store file {per:.1f} B/record (segments "
        f"{stats['segment_bytes'] / N:.1f}) > bound {FILE_BYTES_PER_RECORD_MAX}"
        + msgpack_note(per, data))


def test_heap_at_most_msgpack(data):
    """Issue 10's goal, held: records in the heap take no more than msgpack."""
    msgpack = pytest.importorskip("msgpack", reason="msgpack comes with the test extra")
    frozen, used = freeze_measured(data)
    theirs = len(msgpack.packb(data))
    assert len(frozen) == N and used <= theirs, f"heap {used / N:.1f} B/record > msgpack {theirs / N:.1f}"


def test_store_file_at_most_msgpack(data, tmp_path):
    """Issue 10's goal, held: the store file takes no more than msgpack (at
    5,000 records LMDB's own pages weigh more than at 200,000)."""
    msgpack = pytest.importorskip("msgpack", reason="msgpack comes with the test extra")
    with cowstore.open(str(tmp_path / "records.cow"), durable=False) as store:
        store["ds"] = data
        used = store.stats()["file_bytes"]
    theirs = len(msgpack.packb(data))
    assert used <= theirs, f"store file {used / N:.1f} B/record > msgpack {theirs / N:.1f}"



def appended(data):
    out = cowstore.CowList()
    for r in data:
        out.append(r)
    return out


def extended(data):
    out = cowstore.CowList()
    out.extend(data)
    return out


def assigned(data):
    out = cowstore.CowList([None] * len(data))
    for i, r in enumerate(data):
        out[i] = r
    return out


# A record assigned alone is packed but shares no batch: its slot, a pack
# header and its own shape word (measured 2026-12-04: 73.5 B/record) + 5%.
ASSIGNED_BYTES_PER_RECORD_MAX = 77.2


@pytest.mark.parametrize("build, bound", [(appended, HEAP_BYTES_PER_RECORD_MAX),
                                          (extended, HEAP_BYTES_PER_RECORD_MAX),
                                          (assigned, ASSIGNED_BYTES_PER_RECORD_MAX)])
def test_records_added_one_by_one_are_packed_too(data, build, bound):
    """Records appended, extended or assigned into a list cost about what
    freeze gives them (JSON Lines import appends), not a general map each
    (~290 B/record)."""
    built, used = built_measured(lambda: build(data))
    assert cowstore.thaw(built) == data
    assert used / N <= bound, f"{build.__name__}: {used / N:.1f} B/record > {bound}"


# A {str: int} map built one key at a time, and a list of ints: their
# vector leaves are packed (compact.h) and the map's index leaves are 4
# bytes.  Measured 2026-12-05 at 10^5: 26.4 B/entry (dict: ~127; before
# packed leaves 48.4) and 4.8 B/int (16 before); bound = + 5%.
MAP_N = 100_000
MAP_BYTES_PER_ENTRY_MAX = 27.8
LIST_BYTES_PER_INT_MAX = 5.0


# Keys past 14 bytes are blobs: a 22-byte key's blob has an 8-byte header
# (value.h).  Measured 2026-12-05 at 10^5: 64.5 B/entry (80.5 with format
# 5's 24-byte header; dict ~141); bound = + 5%.
LONG_KEY_BYTES_PER_ENTRY_MAX = 67.8


def _map_of(key_format):
    d = cowstore.CowDict()
    for i in range(MAP_N):
        d[key_format.format(i)] = i
    return d


@pytest.mark.parametrize("key_format, bound", [("key{}", MAP_BYTES_PER_ENTRY_MAX),
                                               ("customer/{:08d}/name", LONG_KEY_BYTES_PER_ENTRY_MAX)])
def test_str_int_map_bytes_per_entry(key_format, bound):
    d, used = built_measured(lambda: _map_of(key_format))
    assert len(d) == MAP_N and d[key_format.format(4321)] == 4321
    assert used / MAP_N <= bound, f"{used / MAP_N:.1f} B/entry"


def test_list_of_ints_bytes_per_int():
    lst, used = built_measured(lambda: cowstore.CowList(range(MAP_N)))
    assert lst[MAP_N - 1] == MAP_N - 1 and sum(lst) == MAP_N * (MAP_N - 1) // 2
    assert used / MAP_N <= LIST_BYTES_PER_INT_MAX, f"{used / MAP_N:.1f} B/int"


# Long strs repeated within one value are one blob (strset.h): in the heap,
# and in a store since a commit writes a node once.  1,000 records of one
# 1,000-byte description made as distinct str objects, as json.loads makes
# them: measured 2026-12-05 at 17.7 KB in the heap (1.04 MB before), which
# is about the one description plus 17 B a record.
DOC_RECORDS = 1_000
REPEATED_DOC_MAX_BYTES = 40_000


def _documented_records():
    return [{"id": i, "doc": "".join(["<p>A description.</p>"] * 50)} for i in range(DOC_RECORDS)]


def test_repeated_long_strings_are_stored_once(tmp_path):
    data = _documented_records()
    assert len({id(r["doc"]) for r in data}) == DOC_RECORDS      # distinct objects
    frozen, used = built_measured(lambda: cowstore.freeze(data))
    assert cowstore.thaw(frozen) == data
    assert used <= REPEATED_DOC_MAX_BYTES, f"heap {used} B"
    with cowstore.open(str(tmp_path / "docs.cow"), durable=False) as store:
        store["ds"] = frozen
        segment_bytes = store.stats()["segment_bytes"]
        assert store["ds"][DOC_RECORDS - 1]["doc"] == data[0]["doc"]
    assert segment_bytes <= REPEATED_DOC_MAX_BYTES, f"store segments {segment_bytes} B"


def test_strings_shared_in_one_value_stay_independent_values():
    """A shared blob is invisible: changing one record's str leaves the others."""
    data = _documented_records()
    d = cowstore.CowDict({"a": data[0]["doc"], "b": data[1]["doc"], "l": [data[2]["doc"]] * 3})
    d["a"] = d["a"] + "!"
    d["l"][1] = "short"
    assert d["b"] == data[0]["doc"] and d["a"] == data[0]["doc"] + "!"
    assert list(d["l"]) == [data[0]["doc"], "short", data[0]["doc"]]



# What docs/semantics.md (Costs) says a record written once costs against a
# packed one: "A written record so costs ~Nx a packed one".
WRITTEN_FACTOR = re.compile(r"[Aa] written record so costs ~([\d.]+)(?:-([\d.]+))?x a packed one")


def test_a_written_record_costs_what_the_docs_say(data):
    """One write into each of the bench's records: each is packed again for
    its slot (54 -> ~80 B/record; as general maps, before, 342 B: 6.4x).
    The factor semantics.md states must match the measured one within 20%."""
    with open(os.path.join(ROOT, "docs", "semantics.md"), encoding="utf-8") as f:
        m = WRITTEN_FACTOR.search(f.read())
    low, high = float(m[1]), float(m[2] or m[1])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        records = cowstore.freeze(data)
        packed = tracemalloc.get_traced_memory()[0] - before
        for record in records:
            record["id"] = record["id"]       # a new pack made from the old
        gc.collect()
        written = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    factor = written / packed
    assert 0.8 * low <= factor <= 1.2 * high, f"written records are {factor:.1f}x packed ones"
