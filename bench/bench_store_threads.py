"""Q17 Stored reads from threads: a store-backed map read by 1 and 2 threads,
against py-lmdb + pickle reading the same records from one environment."""
import os
import pickle
import random
import tempfile
import threading
import time

import _harness as H
import cowstore  # after _harness, which finds a checkout's cowstore

N = 10_000 if H.QUICK else 100_000      # records in the map
READS = 2_000 if H.QUICK else 20_000    # reads per thread per sample


def records(n):
    rng = random.Random(H.SEED)
    return {f"k{i}": {"id": i, "name": f"user{i}", "score": rng.random()} for i in range(n)}


def threaded(fn, nthreads):
    """Wall ns for nthreads threads each running fn() once, started together."""
    barrier = threading.Barrier(nthreads + 1)

    def worker():
        barrier.wait()
        fn()

    threads = [threading.Thread(target=worker) for _ in range(nthreads)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter_ns()
    for t in threads:
        t.join()
    return time.perf_counter_ns() - t0


def run():
    """Reads from 1 and 2 threads: cowstore store vs py-lmdb + pickle."""
    res = H.result(
        "threads", "17. Stored reads from threads",
        f"How many random record reads per second do 1 and 2 threads get from a stored "
        f"map of {N:,} records, cowstore against py-lmdb + pickle?",
        f"One store file holds the map as one root; one LMDB environment holds each record "
        f"pickled under its key. Each thread reads {READS:,} random keys and one field of "
        "each record (`m[k]['name']` against `pickle.loads(txn.get(k))['name']`, one read "
        "transaction per thread). Wall time of the threads started together; medians of "
        f"{H.REPEATS}, the two sides interleaved.")
    lmdb = H.optional("lmdb")[0]
    data = records(N)
    keys = list(data)
    with tempfile.TemporaryDirectory() as d:
        store = cowstore.open(os.path.join(d, "s.cow"), durable=False)
        store["m"] = data
        m = store["m"]
        env = None
        if lmdb is not None:
            env = lmdb.open(os.path.join(d, "l.mdb"), map_size=1 << 30, subdir=False,
                            lock=True, max_readers=16)
            with env.begin(write=True) as txn:
                for k, v in data.items():
                    txn.put(k.encode(), pickle.dumps(v, 5))

        def cow_reads():
            rng = random.Random()
            for _ in range(READS):
                m[keys[rng.randrange(N)]]["name"]

        def lmdb_reads():
            rng = random.Random()
            with env.begin() as txn:
                for _ in range(READS):
                    pickle.loads(txn.get(keys[rng.randrange(N)].encode()))["name"]

        rows, ratios = [], {}
        for nthreads in (1, 2):
            got = {"cowstore": [], "py-lmdb": []}
            for r in range(H.REPEATS):
                got["cowstore"].append(threaded(cow_reads, nthreads))
                if env is not None:
                    got["py-lmdb"].append(threaded(lmdb_reads, nthreads))
            per_s = {k: nthreads * READS / (H.median(v) / 1e9) for k, v in got.items() if v}
            ratio = H.paired_ratio(got["py-lmdb"], got["cowstore"]) if env else None
            ratios[nthreads] = ratio
            rows.append([str(nthreads), f"{per_s['cowstore']:,.0f}",
                         f"{per_s['py-lmdb']:,.0f}" if env else "—",
                         H.fmt_ratio(ratio) if ratio else "—"])
        store.close()
        if env is not None:
            env.close()
    res["tables"].append({"caption": "random record reads per second (all threads together)",
                          "columns": ["threads", "cowstore", "py-lmdb + pickle",
                                      "cowstore speed / py-lmdb"],
                          "rows": rows})
    for nthreads, ratio in ratios.items():
        H.goal(res, f"{nthreads} thread{'s' if nthreads > 1 else ''}: cowstore reads at least "
                    "as fast as py-lmdb + pickle",
               f"{H.fmt_ratio(ratio)} py-lmdb's rate" if ratio else "py-lmdb missing",
               (ratio >= 1) if ratio else None)
    res["notes"].append("Both sides hold the GIL while they decode: two threads share one "
                        "interpreter, so the second adds little to either rate.")
    return res


def main(argv=None):
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
