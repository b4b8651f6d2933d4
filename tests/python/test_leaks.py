"""Nothing leaks: core nodes return to their count, inserted objects' Python
reference counts return to their start, and a create/copy/mutate/drop loop
keeps traced memory flat."""
import gc
import sys
import tracemalloc

import cowstore
from cowstore import CowDict, CowList, CowSet, _cowstore


def churn(rounds=200):
    base = cowstore.freeze({"rows": [{"id": i, "name": f"n{i}" * 3, "tags": ["a", "b"]}
                                     for i in range(300)], "meta": {"v": 1}})
    for r in range(rounds):
        c = base.copy()
        c["rows"][r % 300]["name"] = "changed" * 5
        c["meta"]["v"] = r
        c["rows"].append({"new": [r]})
        del c["rows"][0]
        s = CowSet(range(50))
        s.discard(3)
        d = CowDict.fromkeys(range(100))
        while d:
            d.popitem()
        list(c["rows"][5].items())
        CowDict(c), CowList(c["rows"]), CowSet(s)     # new headers over shared nodes
        list(cowstore.diff(base, c))
        next(cowstore.diff(c, base))        # abandoned mid-walk
    return base


def test_core_nodes_are_all_freed():
    gc.collect()
    before = _cowstore._live_nodes()
    base = churn(50)
    del base
    gc.collect()
    assert _cowstore._live_nodes() == before


def test_refcounts_of_inserted_objects_return():
    key, value = "k" * 40, 12345678901234567890
    items = [key, value, (1, 2), b"bytes" * 10]
    start = [sys.getrefcount(o) for o in items]
    d = CowDict()
    for i, o in enumerate(items):
        d[o if i != 1 else "v"] = o
    l = CowList(items)
    l.copy().append(items[0])
    del d, l, o

    gc.collect()
    assert [sys.getrefcount(o) for o in items] == start


def test_churn_keeps_traced_memory_flat():
    churn(20)                       # warm caches and free lists
    gc.collect()
    tracemalloc.start()
    try:
        churn(100)
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        churn(300)
        gc.collect()
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert second - first < 64 * 1024, (first, second)


def test_foreign_probes_refills_and_exhausted_iterators_leak_nothing():
    import decimal
    gc.collect()
    before = _cowstore._live_nodes()
    probe = decimal.Decimal(1)
    start = sys.getrefcount(probe)
    for _ in range(50):
        d, s, l = CowDict({1: "a", 2: [1]}), CowSet([1, 2]), CowList([0, 1, [2]])
        assert probe in d and probe in s and probe in l and l.count(probe) == 1
        d[probe] = "b"
        s.add(probe)
        s.discard(probe)
        l.remove(probe)
        d.pop(probe)
        l.__init__(range(3))
        d.__init__(x=1)
        s.__init__("ab")
        for it in (iter(l), reversed(l), iter(d), iter(s)):
            list(it)
        l.sort(key=lambda x: -x)
    del d, s, l, it
    gc.collect()
    assert sys.getrefcount(probe) == start and _cowstore._live_nodes() == before
