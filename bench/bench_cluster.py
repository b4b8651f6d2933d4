"""Values through Dask and Ray (issue 12): worker memory and time, cowstore
parcels against plain objects (and a pyarrow table on Ray).

Not run by `make bench` / run_all.py (it starts clusters: minutes, not
seconds); run it alone: a full run writes docs/bench_cluster.md, which
run_all.py appends to docs/benchmarks.md as section 15:

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


def store_file_bytes(plain):
    """Bytes of a store file holding the records as one root, after compaction."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.cow")
        store = cowstore.open(path)
        store["rows"] = plain
        store.compact()
        store.close()
        return os.path.getsize(path)


def verdict(met):
    return "**met**" if met else "**not met**"


def report(plain):
    """The Markdown section (a list of lines)."""
    heap = FrozenList(cowstore.freeze(plain))
    data = cowstore.parcel(heap)
    pack = len(data)
    segments = cowstore._cowstore._measure([heap])[0]
    file_bytes = store_file_bytes(plain)
    t0 = time.perf_counter()
    opened = cowstore.open_parcel(data)
    open_s = time.perf_counter() - t0
    del opened
    drows = dask_rows(plain)
    rrows, _ = ray_rows(plain)
    (_, dplain_mem, dplain_t), (_, dcow_mem, dcow_t) = drows
    ray_cow = next(total for name, _, total in rrows if name.startswith("cowstore"))
    out = [f"## 15. Dask and Ray: values through a cluster", "",
           f"{N:,} records (bench/records.py), medians of {REPEATS} "
           f"({'quick' if QUICK else 'full'} run of `bench/bench_cluster.py`).", "",
           "| goal | measured | verdict |", "|---|---|---|",
           f"| a packed value <= 1.1x its store bytes | parcel {pack / MIB:.1f} MiB = "
           f"{pack / segments:.2f}x the nodes' store segments, {pack / file_bytes:.2f}x the "
           f"compacted store file | {verdict(pack <= 1.1 * file_bytes)} |",
           f"| opening a parcel is O(1) | {open_s * 1e6:.0f} us for {N:,} records "
           f"| {verdict(open_s < 0.01)} |",
           f"| Dask, {DASK_WORKERS} workers: worker memory <= 0.2x plain objects | "
           f"{dcow_mem / dplain_mem:.2f}x | {verdict(dcow_mem <= 0.2 * dplain_mem)} |",
           f"| Dask: time to the first result <= plain | {dcow_t / dplain_t:.2f}x "
           f"| {verdict(dcow_t <= dplain_t)} |",
           f"| Ray, {RAY_WORKERS} workers reading one value: total <= 1.3x one pack | "
           f"{ray_cow / pack:.2f}x | {verdict(ray_cow <= 1.3 * pack)} |", "",
           f"**Dask**: `scatter([value], broadcast=True)` to {DASK_WORKERS} worker processes "
           "(LocalCluster), then a task reads one record.", "",
           "| form | worker USS growth (median worker) | vs plain | scatter to first result "
           "| vs plain |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, mem, t in drows:
        out.append(f"| {name} | {mem / MIB:.1f} MiB | {mem / dplain_mem:.2f}x | {t:.2f} s | "
                   f"{t / dplain_t:.2f}x |")
    out += ["", f"**Ray**: `ray.put(value)`, then {RAY_WORKERS} actors `ray.get` it and "
            "read every record (sum of ids), holding it.", "",
            "| form | object store bytes | workers' USS growth + object | vs one parcel |",
            "| --- | ---: | ---: | ---: |"]
    for name, obj, total in rrows:
        out.append(f"| {name} | {obj / MIB:.1f} MiB | {total / MIB:.1f} MiB | "
                   f"{total / pack:.2f}x |")
    out += ["", "- USS: a process's private memory; shared pages (Ray's object store, "
            "mapped files) count in no worker.  Dask workers keep the frames they "
            "received: for cowstore that is the parcel, read in place.",
            "- Dask's default serialization sends a plain list item by item; that is most "
            "of its time to first result.",
            f"- Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"git {_git_head()}, the same machine as above (2 cores, shared).", "",
            "*(Section 15 is written by `bench/bench_cluster.py`, run alone: it starts Dask "
            "and Ray clusters, so `make bench` carries over its last results from "
            "docs/bench_cluster.md.)*"]
    return out


def _git_head():
    import subprocess
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        return "?"


def main():
    lines = report(R.records(N))
    text = "\n".join(lines) + "\n"
    print(text)
    if not QUICK:
        out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "docs", "bench_cluster.md")
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
