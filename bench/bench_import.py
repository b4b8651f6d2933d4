"""Q12 importing JSON Lines: does `cowstore import` keep the importing
process's memory flat as the input grows to ~1 GB, and what does it cost
against loading the same lines into Python objects or into py-lmdb + pickle?"""
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import _harness as H
import cowstore

# Input sizes in MiB; COWSTORE_BENCH_IMPORT_MB sets the largest (default 1024).
MAX_MB = int(os.environ.get("COWSTORE_BENCH_IMPORT_MB", "32" if H.QUICK else "1024"))
SIZES_MB = sorted({mb for mb in (MAX_MB // 16, MAX_MB // 4, MAX_MB) if mb >= 1})
# The in-memory baselines hold everything: run them up to this size only.
BASELINE_MAX_MB = 256
RSS_GOAL_MB = 200
CITIES = ("Paris", "Lima", "Oslo", "Kyoto", "Accra", "Quito")

# Loads every line into a Python list (what a program without a store does).
LOAD_PLAIN = """
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1], "rb")]
print(len(rows))
"""
# Streams the lines into py-lmdb, one pickled record per key, a commit per
# 10,000 records (the usual hand-rolled alternative to a store).
LOAD_LMDB = """
import json, pickle, sys, lmdb
env = lmdb.open(sys.argv[2], map_size=1 << 36, subdir=False, sync=True)
txn, n = env.begin(write=True), 0
for line in open(sys.argv[1], "rb"):
    txn.put(n.to_bytes(8, "big"), pickle.dumps(json.loads(line), protocol=5))
    n += 1
    if n % 10000 == 0:
        txn.commit(); txn = env.begin(write=True)
txn.commit()
print(n)
"""


def write_jsonl(path, mb, seed=H.SEED):
    """JSON Lines of nested records until the file reaches mb MiB; returns lines."""
    rng = random.Random(seed)
    limit, n = mb << 20, 0
    with open(path, "w", encoding="utf-8") as fh:
        while fh.tell() < limit:
            fh.write(json.dumps({
                "id": n, "name": f"user{n}", "email": f"user{n}@example.com",
                "tags": ["alpha", "beta", "gamma"][: n % 4],
                "score": round(rng.random() * 100, 3), "active": n % 2 == 0,
                "address": {"city": rng.choice(CITIES), "zip": f"{rng.randint(10000, 99999)}"},
            }) + "\n")
            n += 1
    return n


def run_measured(argv):
    """(seconds, peak RSS bytes, stdout) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({proc.returncode}): {err.strip()}")
    return took, usage.ru_maxrss * 1024, out       # ru_maxrss is in KiB on Linux


def measure_size(tmp, mb):
    src = os.path.join(tmp, f"in-{mb}.jsonl")
    lines = write_jsonl(src, mb)
    store = os.path.join(tmp, f"s-{mb}.store")
    took, rss, _ = run_measured([sys.executable, "-m", "cowstore", "import", store, "rows",
                                 src, "--no-progress"])
    with cowstore.open(store, readonly=True) as s:
        assert len(s["rows"]) == lines, "import lost lines"
        file_size = s.stats()["file_size"]
    row = {"mb": mb, "lines": lines, "json": os.path.getsize(src), "store": file_size,
           "cow": (took, rss)}
    if mb <= BASELINE_MAX_MB:
        row["plain"] = run_measured([sys.executable, "-c", LOAD_PLAIN, src])[:2]
        if H.optional("lmdb")[0] is not None:
            row["lmdb"] = run_measured([sys.executable, "-c", LOAD_LMDB, src,
                                        os.path.join(tmp, f"l-{mb}.lmdb")])[:2]
    for path in (src, store, store + "-lock"):
        os.unlink(path)
    return row


def run():
    """Q12 import: peak RSS and time of `cowstore import` at growing inputs."""
    res = H.result(
        "import", "12. Importing JSON Lines (`cowstore import`)",
        "Does importing a JSON Lines file keep the importer's memory flat up to ~1 GB "
        "of input, and how does its time compare with the alternatives?",
        "Each import runs `python -m cowstore import STORE rows FILE` in a fresh process; "
        "peak RSS is that process's own maximum resident set (`wait4` rusage, which "
        "includes file pages it mapped). Baselines, also one fresh process each, up to "
        f"{BASELINE_MAX_MB} MiB: every line into a Python list (`json.loads`), and "
        "py-lmdb with one pickled record per key, a commit per 10,000. One run per size "
        "(a 1 GiB import is minutes, not a microbenchmark): times are indicative, the "
        "memory figures are the claim.")
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("COWSTORE_BENCH_TMP")) as tmp:
        for mb in SIZES_MB:
            rows.append(measure_size(tmp, mb))

    def cell(row, key, i, fmt):
        return fmt(row[key][i]) if key in row else "—"

    res["tables"].append({
        "caption": "Peak RSS of the importing process",
        "columns": ["input", "lines", "cowstore import", "json.loads → list",
                    "py-lmdb + pickle", "store file / JSON"],
        "rows": [[H.fmt_bytes(r["json"]), f"{r['lines']:,}", H.fmt_bytes(r["cow"][1]),
                  cell(r, "plain", 1, H.fmt_bytes), cell(r, "lmdb", 1, H.fmt_bytes),
                  f"{r['store'] / r['json']:.2f}x"] for r in rows]})
    res["tables"].append({
        "caption": "Wall time (one run each)",
        "columns": ["input", "cowstore import", "MiB/s", "json.loads → list",
                    "py-lmdb + pickle", "cowstore / py-lmdb"],
        "rows": [[H.fmt_bytes(r["json"]), f"{r['cow'][0]:.1f} s",
                  f"{r['json'] / r['cow'][0] / 2**20:.1f}",
                  cell(r, "plain", 0, lambda t: f"{t:.1f} s"),
                  cell(r, "lmdb", 0, lambda t: f"{t:.1f} s"),
                  f"{r['cow'][0] / r['lmdb'][0]:.2f}x" if "lmdb" in r else "—"]
                 for r in rows]})
    top = rows[-1]
    H.goal(res, f"import of a ~1 GB JSON Lines file: peak RSS < {RSS_GOAL_MB} MB",
           f"{H.fmt_bytes(top['cow'][1])} for {H.fmt_bytes(top['json'])} "
           f"({top['lines']:,} lines); {H.fmt_bytes(rows[0]['cow'][1])} for "
           f"{H.fmt_bytes(rows[0]['json'])}",
           top["cow"][1] < RSS_GOAL_MB * 10**6 if top["mb"] >= 1000 else None)
    res["notes"].append("The importer commits every 4 MiB of input under a temporary root "
                        "and moves it to its name at the end (all or nothing); in bulk mode "
                        "it unmaps the file pages each commit touched, so the page cache "
                        "keeps the data, not the importer.")
    res["notes"].append("The store is larger than the JSON text (see Q8 stored size): each "
                        "key and value is a 16-byte slot plus node headers.")
    res["plots"].append({"file": "bench_import.png",
                         "title": "12: importing JSON Lines",
                         "panels": [{"title": "peak RSS of the importer",
                                     "xlabel": "input (MiB)", "ylabel": "MiB",
                                     "series": _rss_series(rows)}]})
    return res


def _rss_series(rows):
    series = {"cowstore import": [(r["mb"], r["cow"][1] / 2**20) for r in rows]}
    for key, label in (("plain", "json.loads → list"), ("lmdb", "py-lmdb + pickle")):
        pts = [(r["mb"], r[key][1] / 2**20) for r in rows if key in r]
        if pts:
            series[label] = pts
    return series


def main(argv=None):
    return H.script_main(run, argv)


if __name__ == "__main__":
    main()
