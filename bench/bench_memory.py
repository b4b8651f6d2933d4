"""Q5 memory: a {str: int} map of n entries as CowDict vs dict, by tracemalloc
and by RSS, each in a fresh process; and the memory one copy-with-one-change
adds (1,000 copies kept alive)."""
import gc
import json
import math
import os
import random
import subprocess
import sys
import tracemalloc

import _harness as H

RSS_REPEATS = 1 if H.QUICK else 3   # tracemalloc counts are deterministic: one run
COPIES = 1000


def rss_bytes():
    try:
        import psutil
        return psutil.Process().memory_info().rss
    except ImportError:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(kind, n):
    """Builds the map one key at a time, so no other reference to its keys and
    values is left behind (they count: "objects included")."""
    if kind == "dict":
        d = {}
        for i in range(n):
            d[f"key{i}"] = i
        return d
    if kind == "CowDict":
        import cowstore
        d = cowstore.CowDict()
        for i in range(n):
            d[f"key{i}"] = i
        return d
    import immutables
    with immutables.Map().mutate() as mm:
        for i in range(n):
            mm[f"key{i}"] = i
        return mm.finish()


def one_change(kind, base, key):
    if kind == "CowDict":
        c = base.copy()
        c[key] = -1
        return c
    return base.set(key, -1)   # immutables.Map


def measure(method, fn):
    """Bytes fn's result keeps alive: tracemalloc's traced total or the RSS delta."""
    gc.collect()
    if method == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = rss_bytes()
    keep = fn()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if method == "tracemalloc" else rss_bytes()
    if method == "tracemalloc":
        tracemalloc.stop()
    return after - before, keep


def worker(task, kind, method, n):
    """Runs in a fresh process; returns bytes (whole map, or per copy)."""
    if task == "map":
        # Import (and load the extension) outside the measurement.
        __import__({"dict": "sys", "CowDict": "cowstore", "immutables.Map": "immutables"}[kind])
        used, _ = measure(method, lambda: build(kind, n))
        return used
    base = build(kind, n)
    keys = random.Random(H.SEED).sample([f"key{i}" for i in range(n)], min(n, COPIES))
    keys = (keys * (COPIES // len(keys) + 1))[:COPIES]
    used, _ = measure(method, lambda: [one_change(kind, base, k) for k in keys])
    return used / COPIES


def spawn(task, kind, method, n):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", task, kind, method, str(n)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def dict_copy_bytes(n):
    """What one plain-dict copy adds: its table (keys and values are shared)."""
    d = {f"key{i}": i for i in range(n)}
    return sys.getsizeof(d.copy())


def run():
    """Memory: CowDict vs dict by tracemalloc and RSS; bytes per copy-with-one-change."""
    res = H.result(
        "memory", "5. Memory",
        "How much memory does a {str: int} map of n entries take as CowDict vs dict, and "
        f"what does each of {COPIES:,} copies with one change add?",
        "Each number comes from a fresh subprocess that builds the map one key at a time "
        "(keys `'key<i>'`, values `i`; so the key and value objects a dict holds are "
        "counted, and a CowDict holds none). tracemalloc: traced bytes alive after the "
        "build; RSS: resident-set growth (psutil) across the build, which includes "
        "allocator slack and page rounding. tracemalloc is deterministic (one run); RSS is "
        f"the median of {RSS_REPEATS} runs. immutables.Map (built through `mutate()`) for "
        "context. Per-copy: `c = base.copy(); c[k] = -1` with a random k, all "
        f"{COPIES:,} kept alive, growth / {COPIES:,}.")
    have_imm = H.optional("immutables")[0] is not None
    kinds = ["dict", "CowDict"] + (["immutables.Map"] if have_imm else [])
    if not have_imm:
        res["notes"].append(H.optional("immutables")[1])
    map_sizes = H.sizes()[-1:] if H.QUICK else H.sizes()
    rows, series, share = [], {}, {}
    for n in map_sizes:
        got = {}
        for method, reps in (("tracemalloc", 1), ("rss", RSS_REPEATS)):
            for _ in range(reps):       # kinds alternate within each repeat
                for kind in kinds:
                    got.setdefault((kind, method), []).append(spawn("map", kind, method, n))
        med = {k: H.median(v) for k, v in got.items()}
        row = [H.fmt_n(n)]
        for kind in kinds:
            row += [f"{H.fmt_bytes(med[kind, 'tracemalloc'])} ({med[kind, 'tracemalloc'] / n:.0f} B/entry)",
                    f"{H.fmt_bytes(med[kind, 'rss'])} ({med[kind, 'rss'] / n:.0f} B/entry)"]
            for method in ("tracemalloc", "rss"):
                series.setdefault(f"{kind} ({method})", []).append((n, med[kind, method] / n))
        for method in ("tracemalloc", "rss"):
            share[n, method] = med["CowDict", method] / med["dict", method]
        row += [f"{100 * share[n, 'tracemalloc']:.1f}%", f"{100 * share[n, 'rss']:.1f}%"]
        rows.append(row)
    cols = ["n"]
    for kind in kinds:
        cols += [f"{kind} tracemalloc", f"{kind} RSS"]
    res["tables"].append({
        "caption": "Memory of the whole map, objects included (and CowDict as % of dict)",
        "columns": cols + ["CowDict/dict tracemalloc", "CowDict/dict RSS"], "rows": rows})

    # Quick mode leaves immutables out here: each number is a process to start.
    copy_kinds = ["CowDict"] + (["immutables.Map"] if have_imm and not H.QUICK else [])
    crows, cseries, per_copy = [], {}, {}
    for n in H.sizes():
        row = [H.fmt_n(n)]
        for kind in copy_kinds:
            for method in ("tracemalloc", "rss"):
                b = spawn("copies", kind, method, n)
                per_copy[kind, method, n] = b
                row.append(H.fmt_bytes(b))
                cseries.setdefault(f"{kind} ({method})", []).append((n, b))
        dcb = dict_copy_bytes(n)
        cseries.setdefault("plain dict copy (getsizeof)", []).append((n, dcb))
        row.append(H.fmt_bytes(dcb))
        crows.append(row)
    ccols = ["n"] + [f"{k} {m}" for k in copy_kinds for m in ("tracemalloc", "RSS")]
    res["tables"].append({
        "caption": f"Growth per copy with one change ({COPIES:,} copies kept alive)",
        "columns": ccols + ["plain dict copy¹"], "rows": crows})
    res["notes"].append("¹ `sys.getsizeof(d.copy())`: the table one `dict.copy()` "
                        "allocates (it shares the key and value objects); O(n).")
    res["notes"].append("RSS is coarse: it moves in pages and arenas, and the allocator "
                        "may serve requests from memory it already holds (a small map's "
                        "RSS, or one copy's, can read far too low, even 0). Below 10^5 "
                        "entries trust tracemalloc.")

    top = max(map_sizes)
    for method, label in (("tracemalloc", "tracemalloc"), ("rss", "RSS")):
        H.goal(res, f"CowDict ≤ 40% of dict's memory at 10^6 ({label})",
               f"{100 * share[top, method]:.1f}% at n = {H.fmt_n(top)}",
               (share[top, method] <= 0.40) if top >= 10**6 else None)
    lo, hi = min(H.sizes()), max(H.sizes())
    if hi > lo:
        b_lo, b_hi = per_copy["CowDict", "tracemalloc", lo], per_copy["CowDict", "tracemalloc", hi]
        growth, log_growth = b_hi / b_lo, math.log(hi) / math.log(lo)
        H.goal(res, "bytes per copy-with-one-change O(log n), not O(n)",
               f"{H.fmt_bytes(b_lo)} at {H.fmt_n(lo)} → {H.fmt_bytes(b_hi)} at {H.fmt_n(hi)} "
               f"(tracemalloc): {growth:.2f}x while n grew {hi // lo:,}x and log n "
               f"{log_growth:.1f}x", growth <= 2 * log_growth)
        res["notes"].append("Per-copy verdict: met when bytes per copy grow at most "
                            "2 × (log n_max / log n_min) from the smallest to the largest "
                            "size (O(n) would grow as n).")
    res["plots"].append({"file": "bench_memory.png", "title": "Q5: memory",
                         "panels": [{"title": "whole map", "ylabel": "bytes per entry",
                                     "series": series},
                                    {"title": f"per copy with one change ({COPIES:,} kept)",
                                     "ylabel": "bytes per copy", "series": cseries}]})
    return res


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        task, kind, method, n = argv[1:5]
        print(json.dumps(worker(task, kind, method, int(n))))
        return None
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
