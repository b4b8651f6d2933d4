"""Values through Dask and Ray (issue 12): worker memory and time, cowstore
parcels against plain objects (and a pyarrow table on Ray).

Not part of `make bench` / run_all.py (it starts clusters: minutes, not
seconds); run it alone and paste its Markdown into docs/benchmarks.md:

    .venv/bin/python bench/bench_cluster.py            # 10^6 records
    COWSTORE_BENCH_QUICK=1 .venv/bin/python bench/bench_cluster.py

Dask: a LocalCluster of 2 worker processes; the value is scattered to both
(broadcast) and a task reads one record; per worker, the growth of its
unique memory (USS: private pages, so shared memory counts once, nowhere)
and the time from scatter to that first result.  Median of REPEATS fresh
clusters per form.

Ray: ray.init(num_cpus=4); 4 actors each ray.get the same ObjectRef and read
every record; the sum of their USS growth plus the object's bytes in the
object store, against one parcel's bytes.  Medians of REPEATS rounds.
"""
import os
import statistics
import sys
import time

import psutil

import cowstore
from cowstore import FrozenList

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import records as R  # noqa: E402

QUICK = os.environ.get("COWSTORE_BENCH_QUICK", "") not in ("", "0")
N = 10**5 if QUICK else 10**6
REPEATS = 2 if QUICK else 3
DASK_WORKERS = 2
RAY_WORKERS = 4
MIB = 1 << 20


def uss():
    return psutil.Process().memory_full_info().uss


def first_record(value):
    return value[0]["id"] if len(value) else None


def worker_uss(dask_worker=None):
    return uss()


# ---- Dask ------------------------------------------------------------------------------

def dask_once(make):
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=DASK_WORKERS, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        value = make()
        client.run(lambda: __import__("gc").collect())
        before = client.run(worker_uss)
        t0 = time.perf_counter()
        [fut] = client.scatter([value], broadcast=True)
        client.submit(first_record, fut, pure=False).result()
        elapsed = time.perf_counter() - t0
        after = client.run(worker_uss)
        del fut
        grown = [after[w] - before[w] for w in before]
        return statistics.median(grown), elapsed


def dask_rows(plain):
    forms = [("plain list of dicts", lambda: plain),
             ("cowstore FrozenList (heap)", lambda: FrozenList(cowstore.freeze(plain)))]
    out = []
    for name, make in forms:
        runs = [dask_once(make) for _ in range(REPEATS)]
        out.append((name, statistics.median(r[0] for r in runs),
                    statistics.median(r[1] for r in runs)))
    return out


# ---- Ray ---------------------------------------------------------------------------------

def ray_rows(plain):
    import ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=RAY_WORKERS, include_dashboard=False, log_to_driver=False)

    @ray.remote
    class Reader:
        def __init__(self):
            self.held = None

        def uss(self):
            import gc
            gc.collect()
            return uss()

        def read(self, refs):
            self.held = ray.get(refs[0])
            value = self.held
            if hasattr(value, "num_rows"):                  # a pyarrow table
                import pyarrow.compute as pc
                return pc.sum(value.column("id")).as_py()
            return sum(r["id"] for r in value)

        def drop(self):
            self.held = None

    forms = [("plain list of dicts", lambda: plain),
             ("cowstore FrozenList", lambda: FrozenList(cowstore.freeze(plain)))]
    try:
        import pyarrow as pa
        forms.append(("pyarrow Table", lambda: pa.Table.from_pylist(plain)))
    except ImportError:
        pa = None
    readers = [Reader.remote() for _ in range(RAY_WORKERS)]
    ray.get([r.uss.remote() for r in readers])
    pack = len(cowstore.parcel(FrozenList(cowstore.freeze(plain))))
    out = []
    for name, make in forms:
        totals, stored = [], 0
        for _ in range(REPEATS):
            value = make()
            ref = ray.put(value)
            stored = _object_bytes(value)
            before = ray.get([r.uss.remote() for r in readers])
            ray.get([r.read.remote([ref]) for r in readers])
            after = ray.get([r.uss.remote() for r in readers])
            totals.append(sum(a - b for a, b in zip(after, before)) + stored)
            ray.get([r.drop.remote() for r in readers])
            del ref, value
        out.append((name, stored, statistics.median(totals)))
    ray.shutdown()
    return out, pack


def _object_bytes(value):
    """Bytes the object store holds for value: its protocol-5 pickle, in-band
    part plus out-of-band buffers (what Ray's serializer puts there)."""
    import pickle
    bufs = []
    inband = pickle.dumps(value, protocol=5, buffer_callback=bufs.append)
    return len(inband) + sum(b.raw().nbytes for b in bufs)


def main():
    plain = R.records(N)
    heap = FrozenList(cowstore.freeze(plain))
    pack = len(cowstore.parcel(heap))
    store = cowstore.open()
    store["rows"] = plain
    stored = cowstore._cowstore._measure([store["rows"]])[0]
    print(f"# bench_cluster: {N:,} records ({'quick' if QUICK else 'full'}), "
          f"medians of {REPEATS}\n")
    print(f"Parcel: {pack / MIB:.1f} MiB; the same records' nodes in a store: "
          f"{stored / MIB:.1f} MiB (parcel / store = {pack / stored:.2f}x)\n")
    t0 = time.perf_counter()
    cowstore.open_parcel(cowstore.parcel(heap))
    print(f"parcel + open_parcel of {N:,} records: {time.perf_counter() - t0:.3f} s\n")

    rows = dask_rows(plain)
    print(f"## Dask: scatter(broadcast=True) to {DASK_WORKERS} worker processes\n")
    print("| form | worker USS growth (median worker) | vs plain | scatter to first result | vs plain |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base_mem, base_t = rows[0][1], rows[0][2]
    for name, mem, t in rows:
        print(f"| {name} | {mem / MIB:.1f} MiB | {mem / base_mem:.2f}x | {t:.2f} s | "
              f"{t / base_t:.2f}x |")
    print()
    rrows, pack = ray_rows(plain)
    print(f"## Ray: {RAY_WORKERS} actors ray.get one ObjectRef and read every record\n")
    print("| form | object store bytes | workers' USS growth + object | vs one parcel |")
    print("| --- | ---: | ---: | ---: |")
    for name, obj, total in rrows:
        print(f"| {name} | {obj / MIB:.1f} MiB | {total / MIB:.1f} MiB | {total / pack:.2f}x |")


if __name__ == "__main__":
    main()
