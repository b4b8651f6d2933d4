"""make demo: what cowstore does, with figures measured live on this machine.

Builds a list of N small records (N=200,000 by default, COWSTORE_DEMO_N to
change), then compares copy.deepcopy of the plain structure with cowstore's
O(1) copy, the memory each takes, the garbage collector's pause, and shows
that mutating a copy leaves the original untouched.
"""
import copy
import gc
import os
import statistics
import time
import tracemalloc

import cowstore

N = int(os.environ.get("COWSTORE_DEMO_N", "200000"))


def records(n):
    return {"rows": [{"id": i, "name": f"user{i}", "tags": ["a", "b"], "score": i * 0.5}
                     for i in range(n)],
            "meta": {"version": 1}}


def timed(fn, repeat=5):
    """Median wall time of fn() in seconds, and its last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def traced_size(build):
    """Bytes allocated (tracemalloc) by build(), objects included."""
    gc.collect()
    tracemalloc.start()
    obj = build()
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size, obj


def human(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def main():
    print(f"cowstore demo: {N:,} records {{'id', 'name', 'tags', 'score'}}\n")
    t_gc_empty, _ = timed(gc.collect, repeat=3)
    plain_bytes, plain = traced_size(lambda: records(N))
    frozen_bytes, frozen = traced_size(lambda: cowstore.freeze(plain))

    t_deep, _ = timed(lambda: copy.deepcopy(plain), repeat=3)
    t_freeze, _ = timed(lambda: cowstore.freeze(plain), repeat=3)
    t_copy, _ = timed(lambda: copy.deepcopy(frozen), repeat=1001)
    print("1. Copying")
    print(f"   copy.deepcopy(plain structure)   {human(t_deep):>10}")
    print(f"   copy.deepcopy(cowstore version)  {human(t_copy):>10}"
          f"   ({t_deep / t_copy:,.0f}x faster: O(1), shares every node)")
    print(f"   cowstore.freeze(plain), one pass {human(t_freeze):>10}"
          f"   ({t_deep / t_freeze:.1f}x faster than one deepcopy)\n")

    print("2. Memory (tracemalloc, objects included)")
    print(f"   plain dicts/lists   {plain_bytes / 2**20:8.1f} MiB")
    print(f"   cowstore            {frozen_bytes / 2**20:8.1f} MiB"
          f"   ({frozen_bytes / plain_bytes:.0%} of plain)")
    copies = [frozen.copy() for _ in range(1000)]
    gc.collect()
    tracemalloc.start()
    for i, c in enumerate(copies):
        c["rows"][i]["name"] = "edited"
    grown = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"   1,000 copies, one edit each: +{grown / 2**10:,.0f} KiB in all"
          f" ({grown / 1000:,.0f} B per copy: only the edited path is copied)\n")
    del copies

    print("3. A mutation on a copy leaves the original untouched")
    snapshot = copy.deepcopy(frozen)
    snapshot["rows"][0]["tags"].append("new")
    snapshot["meta"]["version"] = 2
    print(f"   original rows[0].tags = {cowstore.thaw(frozen['rows'][0]['tags'])},"
          f" meta = {cowstore.thaw(frozen['meta'])}")
    print(f"   copy     rows[0].tags = {cowstore.thaw(snapshot['rows'][0]['tags'])},"
          f" meta = {cowstore.thaw(snapshot['meta'])}")
    changes = list(cowstore.diff(frozen, snapshot))
    print(f"   cowstore.diff finds {len(changes)} changes without walking {N:,} rows:")
    for change in changes:
        print(f"     {change.kind:8} {'/'.join(map(str, change.path))}: {change.old!r} -> {change.new!r}")
    print()

    print("4. Garbage-collector pause, full gc.collect()")
    t_gc_plain, _ = timed(gc.collect, repeat=3)
    del plain
    gc.collect()
    t_gc_frozen, _ = timed(gc.collect, repeat=3)
    print(f"   before building anything         {human(t_gc_empty):>10}")
    print(f"   with the plain structure alive   {human(t_gc_plain):>10}")
    print(f"   with only the cowstore version   {human(t_gc_frozen):>10}"
          f"   (its nodes hold no Python objects)")
    print()
    store_section(frozen)


def _open_and_read(path, i):
    """Runs in a fresh process: open the store, read one record."""
    import resource
    t0 = time.perf_counter()
    store = cowstore.open(path, readonly=True)
    ds = store["ds"]
    name = ds["rows"][i]["name"]
    return time.perf_counter() - t0, name, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _worker_sum(rows):
    return sum(len(r["name"]) for r in rows)


def store_section(frozen):
    """5. The same data in a store: commit once, open anywhere, share with workers."""
    import multiprocessing
    import pickle
    import tempfile
    print("5. A store: commit once, open instantly in any process, share with workers")
    with tempfile.TemporaryDirectory(prefix="cowstore-demo-") as tmp:
        path = os.path.join(tmp, "demo.cow")
        store = cowstore.open(path, durable=False)
        t_commit, _ = timed(lambda: store.__setitem__("ds", frozen), repeat=1)
        size = store.stats()["file_size"]
        print(f"   commit {N:,} records             {human(t_commit):>10}"
              f"   ({size / N:,.0f} B/record on disk)")
        ds = store["ds"]
        version = ds.copy()
        version["rows"][N // 2]["name"] = "edited"
        before = store.stats()["segment_bytes"]
        t_edit, _ = timed(lambda: store.__setitem__("ds", version), repeat=1)
        grown = store.stats()["segment_bytes"] - before
        print(f"   commit a one-field edit          {human(t_edit):>10}"
              f"   (+{grown:,} B: only the changed path is written)")
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            t_open, name, _ = pool.apply(_open_and_read, (path, N // 2))
        print(f"   fresh process: open + read one   {human(t_open):>10}   (-> {name!r})")
        rows = store["ds"]["rows"]
        print(f"   a store-backed value pickles to  {len(pickle.dumps(rows)):>7} B"
              f"   (a reference: workers map the same pages)")
        with multiprocessing.get_context("fork").Pool(2) as pool:
            sums = pool.map(_worker_sum, [rows, rows])
        print(f"   2 forked workers read every row: {sums[0]:,} name characters each")
        store.close()


if __name__ == "__main__":
    main()
