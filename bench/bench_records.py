"""Q14 bytes per record (issue 10): JSON-like records, a real nested JSON corpus
and a {str: int} map, as plain Python objects, JSON text, msgpack, Arrow and
cowstore (heap and store file).

Sizes are deterministic (tracemalloc counts, byte lengths, LMDB page counts;
immutables' and pyrsistent's follow the per-process str hash): each is measured
once; nothing here is timed."""
import glob
import gzip
import json
import os
import tempfile

import _harness as H
import bench_memory
import bench_store_size
import cowstore  # after _harness, which finds a checkout's cowstore
import records as R

N_RECORDS = 10_000 if H.QUICK else 200_000
# The corpus: botocore's service descriptions, whole documents, taken in name
# order until their compact JSON reaches this many bytes.
CORPUS_BYTES = (2 if H.QUICK else 32) << 20
MAP_N = 10**4 if H.QUICK else 10**6

PLAIN, JSON, MSGPACK = "plain Python objects", "JSON text (compact)", "msgpack"
ARROW, ARROW_IPC = "Arrow table (in memory)", "Arrow IPC file"
IMMUTABLES, PYRSISTENT = "immutables.Map + tuples", "pyrsistent.freeze"
HEAP, SEGMENTS, FILE = "cowstore heap", "cowstore store segments", "cowstore store file"
THAWED = "plain objects from cowstore.thaw"
WRITTEN = "cowstore heap, each record then written once"


def traced(fn):
    """(bytes that fn's result keeps alive by tracemalloc, gc'd; the result)."""
    return bench_memory.measure("tracemalloc", fn)


def to_immutables(obj):
    """dicts as immutables.Map, lists as tuples, recursively: the nearest a user
    gets to frozen records with immutables."""
    import immutables
    if isinstance(obj, dict):
        return immutables.Map({k: to_immutables(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return tuple(to_immutables(v) for v in obj)
    return obj


def write_each(records):
    """One field of each record written through the view a loop gives (each
    stays packed in its slot: docs/semantics.md, Costs)."""
    for record in records:
        record["score"] = -1.0
    return records


def measure(text, tmp, persistent=False):
    """Bytes of one dataset (compact JSON text, a list at the top) in every form;
    {column: bytes or None (not available), ...}, and notes on what is missing."""
    got, notes = {JSON: len(text)}, []
    got[PLAIN], data = traced(lambda: json.loads(text))
    msgpack, note = H.optional("msgpack")
    got[MSGPACK] = len(msgpack.packb(data)) if msgpack else None
    notes += [note] if note else []
    got[ARROW], got[ARROW_IPC], note = arrow_bytes(data, tmp)
    notes += [note] if note else []
    if persistent:
        for name, module, convert in ((IMMUTABLES, "immutables", to_immutables),
                                      (PYRSISTENT, "pyrsistent", None)):
            mod, note = H.optional(module)
            convert = convert or (mod.freeze if mod else None)
            got[name] = traced(lambda: convert(data))[0] if mod else None
            notes += [note] if note else []
    got[HEAP], frozen = traced(lambda: cowstore.freeze(data))
    got[THAWED] = traced(lambda: cowstore.thaw(frozen))[0]
    del frozen
    if persistent:                      # records: a program updating its dataset
        got[WRITTEN] = traced(lambda: write_each(cowstore.freeze(data)))[0]
    path = os.path.join(tmp, "data.cow")
    stats = bench_store_size.write_store(path, data)
    got[SEGMENTS], got[FILE] = stats["segment_bytes"], stats["file_bytes"]
    for name in (path, path + "-lock"):
        os.unlink(name)
    return got, notes


def arrow_bytes(data, tmp):
    """(table.nbytes, IPC file size, note) of pa.Table.from_pylist(data); the
    file is read back through a memory map to show that it can be."""
    pa, note = H.optional("pyarrow")
    if pa is None:
        return None, None, note
    import pyarrow.ipc
    table = pa.Table.from_pylist(data)
    path = os.path.join(tmp, "data.arrow")
    with pa.OSFile(path, "wb") as sink, pyarrow.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with pa.memory_map(path) as source:
        assert pyarrow.ipc.open_file(source).read_all().num_rows == table.num_rows
    size = os.path.getsize(path)
    os.unlink(path)
    return table.nbytes, size, ""


def corpus():
    """(compact JSON text of a list of botocore service descriptions, their
    names, botocore's version), or None when botocore is missing."""
    botocore = H.optional("botocore")[0]
    if botocore is None:
        return None
    root = os.path.join(os.path.dirname(botocore.__file__), "data")
    docs, names, total = [], [], 0
    for service in sorted(os.listdir(root)):
        # The newest API version of the service; .json.gz in recent botocore.
        files = sorted(glob.glob(os.path.join(root, service, "*", "service-2.json*")))
        if not files or total >= CORPUS_BYTES:
            continue
        opener = gzip.open if files[-1].endswith(".gz") else open
        with opener(files[-1], "rb") as fh:
            doc = json.load(fh)
        total += len(R.compact_json(doc))
        docs.append(doc)
        names.append(service)
    return R.compact_json(docs), names, botocore.__version__


def fmt_or_dash(value, fmt):
    return "—" if value is None else fmt(value)


def ratio(a, b):
    return None if a is None or b is None else a / b


def run():
    """Bytes per record: plain, JSON, msgpack, Arrow, cowstore heap and store file."""
    res = H.result(
        "records", "14. Bytes per record",
        "How many bytes does a record take in cowstore, in the heap and in a store "
        "file, against plain Python objects, JSON text, msgpack and Arrow; on the same "
        "question for a large real-world nested JSON corpus; and for a {str: int} map?",
        f"Records: {N_RECORDS:,} from `bench/records.py` (seeded; six fields: int, short "
        "str, float, bool, list of 0-3 tags, a status from 4 strings). Every form starts "
        "from the compact JSON text of the list. Plain = tracemalloc's bytes kept alive by "
        "`json.loads(text)` (gc'd); JSON = `len(text)` (separators `,` `:`); msgpack = "
        "`len(msgpack.packb(data))`; Arrow = `pa.Table.from_pylist(data).nbytes` and the "
        "size of that table written as an Arrow IPC file (read back through "
        "`pa.memory_map`: the file is usable as it lies on disk); immutables = dicts as "
        "`immutables.Map`, lists as tuples; pyrsistent = `pyrsistent.freeze(data)` (both "
        "tracemalloc, records only); cowstore heap = tracemalloc's bytes kept alive by "
        "`cowstore.freeze(data)` (gc'd); thaw = the same of `cowstore.thaw` of that (plain objects, their key strs shared as json.loads shares them, and a pack's repeated strs too); written once = the heap of a freeze whose records then each had one field written (`r['score'] = -1.0` in a loop over them; records only); store = `store['ds'] = data` committed to a new "
        "store file, then `stats()['file_bytes']` (the pages LMDB uses, which is also the "
        "file's size here) and `stats()['segment_bytes']` (the nodes alone). Sizes are "
        "deterministic (immutables and pyrsistent aside, see below): one measurement "
        "each, nothing timed.")
    with tempfile.TemporaryDirectory(prefix="cowstore-bench-") as tmp:
        at = {"records": records_table(res, tmp), "corpus": corpus_table(res, tmp),
              "map": map_table(res, tmp)}
    add_goals(res, at)
    highlight = {HEAP: "tab:orange", SEGMENTS: "tab:orange", FILE: "tab:orange"}
    panels = [{"kind": "bar", "title": f"{N_RECORDS:,} JSON-like records",
               "ylabel": "bytes per record (log scale)", "highlight": highlight, "logy": True,
               "bars": {k: b / N_RECORDS for k, b in at["records"].items() if b is not None}}]
    if at["corpus"]:
        cor = at["corpus"]
        panels.append({"kind": "bar", "title": "botocore service descriptions",
                       "ylabel": "bytes / compact JSON bytes (log scale)",
                       "bars": {k: b / cor[JSON] for k, b in cor.items() if b is not None},
                       "highlight": highlight, "fmt": "{:.2f}", "logy": True})
    res["plots"].append({"file": "bench_records.png", "title": "Q14: bytes per record",
                         "panels": panels})
    return res


def records_table(res, tmp):
    """The seeded records in every form; returns {column: bytes or None}."""
    got, notes = measure(R.compact_json(R.records(N_RECORDS)), tmp, persistent=True)
    res["notes"] += notes
    if got.get(IMMUTABLES) is not None or got.get(PYRSISTENT) is not None:
        res["notes"].append(
            "immutables.Map and pyrsistent's pmap place keys by Python's `hash()` of str, "
            "randomised per process (PYTHONHASHSEED): their tries' and buckets' shapes, and "
            "so their bytes, change from run to run (immutables 266 to 338 B/record, "
            "pyrsistent 1,359 to 1,367, seen at 200,000). Every other figure here is the "
            "same in every run.")
    res["tables"].append({
        "caption": f"{N_RECORDS:,} JSON-like records: bytes per record",
        "columns": ["form", "bytes per record", "/ JSON", "/ msgpack"],
        "rows": [[name, fmt_or_dash(b, lambda v: f"{v / N_RECORDS:.1f}"),
                  fmt_or_dash(ratio(b, got[JSON]), H.fmt_ratio),
                  fmt_or_dash(ratio(b, got[MSGPACK]), H.fmt_ratio)]
                 for name, b in got.items()]})
    return got


def corpus_table(res, tmp):
    """The botocore corpus in every form; returns {column: bytes or None}, or
    None when botocore is missing."""
    loaded = corpus()
    if loaded is None:
        res["notes"].append("`botocore` not importable here: the corpus table is missing.")
        return None
    text, names, version = loaded
    got, notes = measure(text, tmp)
    res["notes"] += notes
    res["tables"].append({
        "caption": f"Real nested JSON: {len(names)} botocore {version} service "
                   f"descriptions ({H.fmt_bytes(len(text))} of compact JSON)",
        "columns": ["form", "bytes", "/ JSON", "/ msgpack"],
        "rows": [[name, fmt_or_dash(b, H.fmt_bytes),
                  fmt_or_dash(ratio(b, got[JSON]), H.fmt_ratio),
                  fmt_or_dash(ratio(b, got[MSGPACK]), H.fmt_ratio)]
                 for name, b in got.items()]})
    res["notes"].append(
        f"Corpus: `botocore/data/<service>/<newest version>/service-2.json(.gz)` of "
        f"the services in name order ({names[0]} … {names[-1]}) until the compact "
        f"JSON reached {H.fmt_bytes(CORPUS_BYTES)}; loaded as one JSON list. API "
        "descriptions: deeply nested, the same keys and strings everywhere. A "
        "different botocore version gives a somewhat different corpus. Arrow is "
        "no natural form for it: `from_pylist` infers one struct type for all the "
        "documents, so every name under `shapes` or `operations` in any service "
        "becomes a field of every document (null where absent); its figures are "
        "what that costs, not a bound on what a columnar layout could do.")
    return got


def map_table(res, tmp):
    """The {str: int} map as dict, CowDict and store; returns (dict bytes,
    CowDict bytes, store file bytes)."""
    map_dict = bench_memory.spawn("map", "dict", "tracemalloc", MAP_N)
    map_heap = bench_memory.spawn("map", "CowDict", "tracemalloc", MAP_N)
    stats = bench_store_size.write_store(os.path.join(tmp, "map.cow"),
                                         bench_memory.build("dict", MAP_N))
    res["tables"].append({
        "caption": f"{{str: int}} map of {H.fmt_n(MAP_N)} entries",
        "columns": ["form", "bytes per entry", "% of dict"],
        "rows": [[name, f"{b / MAP_N:.1f}", f"{100 * b / map_dict:.1f}%"]
                 for name, b in (("dict (keys and values included)", map_dict),
                                 (HEAP, map_heap),
                                 (SEGMENTS, stats["segment_bytes"]),
                                 (FILE, stats["file_bytes"]))]})
    res["notes"].append(
        "Map: keys `'key<i>'`, values `i`, built one key at a time in a fresh process "
        "(as in section 5; the dict's key and int objects count, CowDict holds none); "
        "the store file holds the same map committed as one root.")
    return map_dict, map_heap, stats["file_bytes"]


def add_goals(res, at):
    """Issue 10's size goals: cowstore heap and file ≤ msgpack; map ≤ 25% of dict."""
    rec = at["records"]
    def per_record(b):
        return fmt_or_dash(b, lambda v: f"{v / N_RECORDS:.1f} B")

    for text, key, theirs in (("heap ≤ msgpack's bytes per record", HEAP, MSGPACK),
                              ("store file ≤ msgpack's bytes per record", FILE, MSGPACK),
                              ("heap ≤ Arrow's in-memory table (moonshot)", HEAP, ARROW)):
        r = ratio(rec[key], rec[theirs])
        H.goal(res, f"JSON-like records: cowstore {text}",
               f"{per_record(rec[key])} vs {per_record(rec[theirs])} "
               f"({fmt_or_dash(r, H.fmt_ratio)})", None if r is None else r <= 1)
    if at["corpus"]:
        cor = at["corpus"]
        for label, key in (("heap", HEAP), ("store file", FILE)):
            r = ratio(cor[key], cor[MSGPACK])
            H.goal(res, f"botocore corpus: cowstore {label} ≤ its msgpack bytes",
                   f"{cor[key] / cor[JSON]:.2f}x the JSON vs msgpack "
                   f"{fmt_or_dash(ratio(cor[MSGPACK], cor[JSON]), lambda v: f'{v:.2f}x')} "
                   f"({fmt_or_dash(r, H.fmt_ratio)} of msgpack)", None if r is None else r <= 1)
    map_dict, map_heap, _ = at["map"]
    H.goal(res, "{str: int} at 10^6: cowstore heap ≤ 25% of dict (tracemalloc)",
           f"{100 * map_heap / map_dict:.1f}% at n = {H.fmt_n(MAP_N)}",
           (map_heap <= 0.25 * map_dict) if MAP_N >= 10**6 else None)


if __name__ == "__main__":
    H.script_main(run)
