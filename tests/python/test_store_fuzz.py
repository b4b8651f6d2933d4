"""Corruption fuzzer: damaged store files must fail cleanly, never crash.

A real store file with varied data (nested dicts and lists, sets, long
strings, bigints, several roots, a few versions so there are several
segments) is copied with random byte flips (outside LMDB's own meta and
B-tree pages, which LMDB trusts: see _store_workers.lmdb_btree_pages) or a random
truncation; a
subprocess opens each copy readonly and walks every root (thaw, iterate,
len, lookups); a quarter as many copies are opened writable and committed to.  It must exit 0 or with a clean exception -- a
cowstore.CowstoreError, or OSError/ValueError/KeyError/UnicodeDecodeError
(reported separately) -- and never die from a signal, hang, or raise
anything else.  Before the walk it runs the set algebra on the stored sets
(against each other, heap and builtin sets, in place on copies and on the
stored views), where only CorruptStoreError is allowed; a second base store
holds those sets alone, so that most of its damage lands in them.  Each case
has a fixed seed; a failure prints the seed and the mutation so it reproduces:

    COWSTORE_FUZZ_CASES=500 COWSTORE_FUZZ_SEED=7 pytest tests/python/test_store_fuzz.py

The reader is `python tests/python/_store_workers.py walk FILE`.
"""
import collections
import concurrent.futures
import datetime
import decimal
import fractions
import os
import random
import shutil
import subprocess
import sys
import urllib.parse
import uuid
import zoneinfo

import pytest

import cowstore
import _store_workers as W

CASES = int(os.environ.get("COWSTORE_FUZZ_CASES", "40"))
WRITE_CASES = max(1, CASES // 4)    # opened writable: also the commit path on damaged files
BASE_SEED = int(os.environ.get("COWSTORE_FUZZ_SEED", "20240501"))
WALKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_store_workers.py")
WALK_TIMEOUT = 90           # seconds per case (the walker alarms itself at 60)
MAX_FLIPS = 16
MIN_SET_OPS = 1000          # the walker's set algebra on an undamaged base store
PAGE = 4096


def _varied_data(rng):
    long_text = "".join(rng.choice("abcdéλ中😀 \n") for _ in range(20000))
    return {
        "config": {
            "name": "fuzz-base", "long": long_text, "bytes": bytes(range(256)) * 20,
            "big": 2 ** 300 + 12345, "neg_big": -(3 ** 200), "small": -7,
            "float": 3.25, "nan_free": [0.0, -0.0, 1e308, -1e-308], "flags": [True, False, None],
            "tuple": (1, "two", (3.0, b"four")), "frozen": frozenset({1, 2, "x"}),
        },
        "rows": [{"id": i, "name": f"row-{i}", "tags": {f"t{i % 5}", f"u{i % 3}"},
                  "vals": [i, i * i, str(i) * (i % 9)], "big": 7 ** (i % 80)}
                 for i in range(800)],
        "bigmap": {f"key-{i:05d}": [i, {"sq": i * i}] for i in range(1500)},
        "deep": _deep(40),
        # record-shaped: packed containers (pack.h), with shape and long-string words
        "records": [{"id": i * 7919, "name": f"n{i}", "score": i / 7, "ok": i % 2 == 0,
                     "tags": [f"t{j}" for j in range(i % 4)], "note": "x" * (300 if i % 50 == 0 else 3),
                     "pair": (i, -i), "sub": {"a": 2 ** 70 if i % 9 == 0 else i}}
                    for i in range(600)],
        "sets": _set_data(),
        # extension leaves (ext.h), inline and blob, as values and keys
        "leaves": [{"at": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
                    + datetime.timedelta(minutes=i),
                    "zone": datetime.datetime(2024, 3, 1 + i % 28,
                                              tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
                    "price": decimal.Decimal(i) / 100, "id": uuid.UUID(int=i),
                    "ratio": fractions.Fraction(i, 7), "z": complex(i, 1),
                    "day": datetime.date(2024, 1, 1) + datetime.timedelta(days=i),
                    "enum": uuid.SafeUUID.safe,
                    "nt": urllib.parse.SplitResult("http", f"h{i}", "/", "", ""),
                    decimal.Decimal(i) / 8: datetime.timedelta(seconds=i)}
                   for i in range(200)],
    }


def _set_data():
    """The sets of a base store: the walker runs the set algebra on them
    (_store_workers._set_algebra), each against each, heap and builtin sets."""
    return {"ints": set(range(300)), "strs": {f"s{i}" for i in range(200)},
            "mixed": {1, "1", b"1", 1.5, (1, 2)},
            # ints and strs, a part of them in ints and strs: the core's lookups
            # find some keys and miss others
            "blend": set(range(0, 600, 3)) | {f"s{i}" for i in range(0, 400, 2)},
            "small": {3, 7, "s4", "s9"},          # a small map: scanned, no index
            "frozen": frozenset(range(0, 40, 4)),
            "nested": {"inner": {5, 10, "s5"}, "n": 1}}


def _deep(depth):
    node = {"leaf": "bottom", "n": depth}
    for d in range(depth):
        node = {"level": d, "child": node, "side": [d, [d, [d]]]}
    return node


def _build_base(path):
    """Writes the base store at path (run in a fresh process: see base_store)."""
    rng = random.Random(BASE_SEED)
    data = _varied_data(rng)
    store = cowstore.open(path)
    for name, value in data.items():
        store[name] = value
    # new versions: copy-on-write edits reuse old segments and add new ones
    rows = store["rows"]
    for i in range(0, 800, 53):
        rows[i]["name"] = f"edited-{i}"
        rows[i]["vals"].append(2 ** 100 + i)
    store["rows"] = rows
    bm = store["bigmap"]
    for i in range(0, 1500, 29):
        bm[f"new-{i}"] = {"from": i, "text": "x" * (i % 300)}
    store["bigmap"] = bm
    store["scratch"] = list(range(5000))
    del store["scratch"]
    store["extra"] = {"after-delete": True, "copy": store["config"]["tuple"]}
    stats = store.stats()
    del rows, bm
    store.close()
    assert stats["segments"] >= 3 and stats["roots"] == 8, stats


def _build_sets_base(path):
    """Writes a store of the sets alone (see sets_store), in two versions:
    the second's sets share nodes with the first's segment."""
    store = cowstore.open(path)
    store["sets"] = _set_data()
    sets = store["sets"]
    sets["blend"] |= set(range(600, 700))
    sets["ints"] -= set(range(0, 300, 7))
    sets["nested"]["inner"].add("s6")
    store["sets"] = sets
    del sets
    store.close()


def _written_base(tmp_path_factory, builder, roots):
    """The bytes of the store builder writes, checked to walk cleanly.

    Written by a fresh process, so that its bytes (container identities, the
    shapes of packed records) do not depend on which tests ran before: a
    seed then names the same damaged file in every run."""
    path = str(tmp_path_factory.mktemp("fuzzbase") / "base.cow")
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    f"import test_store_fuzz as T; T.{builder}(sys.argv[2])", here, path],
                   check=True)
    with open(path, "rb") as f:
        blob = f.read()
    # the unmutated file walks cleanly, through the whole set algebra:
    # otherwise every case below means nothing
    set_ops = []
    res = _run_walker(path, "walk", set_ops)
    assert res == ("ok", f"OK {roots} roots"), res
    assert len(set_ops) == 1 and set_ops[0][0] >= MIN_SET_OPS and set_ops[0][1] == 0, set_ops
    return blob


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    """The bytes of a closed store file holding varied data in several segments."""
    return _written_base(tmp_path_factory, "_build_base", 8)


@pytest.fixture(scope="module")
def sets_store(tmp_path_factory):
    """The bytes of a store holding the sets of the base store alone: a flip
    in it mostly lands in a set's nodes, which the set algebra then reads
    (in the base store 1 case in 10 or so gets there)."""
    return _written_base(tmp_path_factory, "_build_sets_base", 1)


def _run_walker(path, mode, set_ops=None):
    """Runs the walker on path: ("ok"|"clean"|"bad"|"signal"|"timeout"|"exit", detail).
    set_ops, a list, gets the walker's (set operations run, CorruptStoreErrors
    among them) if it got that far."""
    try:
        proc = subprocess.run([sys.executable, WALKER, mode, path], capture_output=True,
                              text=True, errors="replace", timeout=WALK_TIMEOUT)
    except subprocess.TimeoutExpired:
        return ("timeout", f"no exit after {WALK_TIMEOUT}s")
    out = proc.stdout.strip().splitlines()
    last = out[-1] if out else ""
    for line in out:
        if set_ops is not None and line.startswith("SETS "):
            set_ops.append(tuple(int(word) for word in line.split()[1::2]))
    if proc.returncode < 0:
        return ("signal", f"died from signal {-proc.returncode}; stderr: {proc.stderr[-800:]}")
    if proc.returncode == W.WALK_OK:
        return ("ok", last)
    if proc.returncode == W.WALK_CLEAN_ERROR:
        return ("clean", last)
    if proc.returncode == W.WALK_BAD_ERROR:
        return ("bad", last)
    return ("exit", f"exit {proc.returncode}; stdout {last!r}; stderr: {proc.stderr[-800:]}")


def _mutate(blob, seed):
    """A damaged copy of blob and a description that reproduces it."""
    rng = random.Random(seed)
    data = bytearray(blob)
    if rng.random() < 0.3:
        cut = rng.randrange(0, len(data))
        return bytes(data[:cut]), f"truncate to {cut} of {len(data)} bytes"
    nonzero = None
    protected = W.lmdb_btree_pages(blob, PAGE)
    flips = []
    for _ in range(rng.randint(1, MAX_FLIPS)):
        pos = None
        while pos is None or pos // PAGE in protected:
            if rng.random() < 0.5:
                pos = rng.randrange(len(data))              # anywhere
            else:                                           # where there is data
                if nonzero is None:
                    nonzero = [i for i in range(0, len(data), 7) if data[i]]
                pos = rng.choice(nonzero) + rng.randrange(7)
                pos = min(pos, len(data) - 1)
        xor = rng.randrange(1, 256)
        data[pos] ^= xor
        flips.append((pos, xor))
    return bytes(data), f"xor bytes (pos, mask) {flips}"


def _family(detail):
    # walker output: "CLEAN cowstore|builtin module.Class: message"
    parts = detail.split()
    return (parts[1], parts[2].rstrip(":")) if len(parts) >= 3 else ("?", detail)


def _run_case(blob, workdir, case, mode="walk"):
    seed = BASE_SEED * 1000 + case
    damaged, how = _mutate(blob, seed)
    path = os.path.join(workdir, f"case-{case}.cow")
    with open(path, "wb") as f:
        f.write(damaged)
    set_ops = []
    outcome, detail = _run_walker(path, mode, set_ops)
    if outcome in ("ok", "clean"):
        for p in (path, path + "-lock"):
            if os.path.exists(p):
                os.unlink(p)
    else:
        how += f"\n    damaged file kept: {path}"   # the base file's padding varies run to run
    return case, seed, how, outcome, detail, set_ops


@pytest.mark.parametrize("mode, cases", [("walk", CASES), ("walk-write", WRITE_CASES)])
def test_random_corruptions_fail_cleanly(base_store, tmp_path, mode, cases):
    """Damaged copies (1..16 flipped bytes, or a random truncation): the walk
    exits 0 or with an allowed exception, never a signal or hang.  Readonly
    (CASES of them), and a few opened writable, committing after the walk."""
    _fuzz(base_store, tmp_path, mode, cases)


@pytest.mark.parametrize("mode, cases", [("walk", CASES), ("walk-write", WRITE_CASES)])
def test_random_corruptions_of_sets_fail_cleanly(sets_store, tmp_path, mode, cases):
    """The same on the store of sets alone, where the damage meets the set
    algebra (|, &, -, ^, their in-place forms and methods, the subset tests,
    ==, discard, remove: stored sets against each other, heap CowSets and
    builtin sets), in which only CorruptStoreError is allowed."""
    _fuzz(sets_store, tmp_path, mode, cases)


def _fuzz(blob, tmp_path, mode, cases):
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        results = list(ex.map(lambda c: _run_case(blob, str(tmp_path), c, mode),
                              range(cases)))
    summary = collections.Counter()
    builtin_sites = collections.Counter()   # where non-cowstore exceptions come from
    failures = []
    set_stores = set_damaged = 0     # stores through the set algebra; damage met there
    for case, seed, how, outcome, detail, set_ops in results:
        set_stores += bool(set_ops)
        set_damaged += any(corrupt for ops, corrupt in set_ops)
        if outcome in ("ok", "clean"):
            family = _family(detail)
            summary[outcome if outcome == "ok" else " ".join(family)] += 1
            if outcome == "clean" and family[0] == "builtin":
                builtin_sites[family[1] + " " + detail[detail.rfind("[at "):]] += 1
        else:
            failures.append(f"case {case} seed {seed}: {outcome}: {detail}\n    mutation: {how}")
    print(f"\nfuzz ({mode}) {cases} cases, base seed {BASE_SEED}: {dict(summary)}; "
          f"set algebra run on {set_stores}, a CorruptStoreError in it on {set_damaged}")
    for site, n in builtin_sites.most_common():
        print(f"  {n:4d}x {site}")
    assert not failures, ("reproduce with `python tests/python/_store_workers.py walk FILE` "
                          "(or _mutate(base blob, seed)):\n" + "\n".join(failures))


def _deterministic(blob, kind):
    if kind == "truncated-half":
        return blob[: len(blob) // 2]
    if kind == "zeroed-meta-pages":
        return bytes(2 * PAGE) + blob[2 * PAGE:]
    if kind == "not-lmdb":
        rng = random.Random(BASE_SEED)
        return b"#!/bin/sh\necho this is not a store\n" + bytes(rng.randrange(256) for _ in range(5 * PAGE))
    if kind == "empty":
        return b""
    if kind == "truncated-to-meta":
        return blob[: 2 * PAGE]
    if kind == "one-page-short":
        return blob[:-PAGE]
    raise AssertionError(kind)


@pytest.mark.parametrize("mode", ["walk", "walk-write"])
@pytest.mark.parametrize("kind", ["truncated-half", "zeroed-meta-pages", "not-lmdb", "empty",
                                  "truncated-to-meta", "one-page-short"])
def test_deterministic_damage_is_refused_at_open(base_store, tmp_path, kind, mode):
    """Files no store can be read from -- half of one, meta pages zeroed, a
    non-LMDB file, a truncated one -- are refused with a CowstoreError, opened
    readonly or writable; none is taken for a (possibly empty) store.  The
    one exception: an empty file opened writable is a new store (as LMDB
    treats it), which then holds what is committed to it."""
    damaged = _deterministic(base_store, kind)
    path = str(tmp_path / f"{kind}.cow")
    with open(path, "wb") as f:
        f.write(damaged)
    outcome, detail = _run_walker(path, mode)
    print(f"\n{kind} ({mode}): {detail}")
    if kind == "empty" and mode == "walk-write":
        assert (outcome, detail) == ("ok", "OK 0 roots")
        assert _run_walker(path, "walk") == ("ok", "OK 1 roots")   # the walker's commit
        return
    assert outcome == "clean", f"{kind} ({mode}): {outcome}: {detail}"
    family, exc_type = _family(detail)
    assert family == "cowstore", f"{kind} ({mode}): not a CowstoreError: {detail}"


def test_walker_reports_a_missing_file_cleanly(tmp_path):
    """The harness itself: a missing file opened readonly is a clean error."""
    outcome, detail = _run_walker(str(tmp_path / "absent.cow"), "walk")
    assert outcome == "clean", detail


def _overflow_runs(blob):
    """The first page of every overflow run in blob (each segment is one)."""
    pg, firsts = 0, []
    while pg < len(blob) // PAGE:
        at = pg * PAGE
        flags = int.from_bytes(blob[at + W.FLAGS_AT: at + W.FLAGS_AT + 2], "little")
        run = 1
        if pg >= 2 and flags & W.P_OVERFLOW:
            firsts.append(pg)
            run = max(1, int.from_bytes(blob[at + W.OVERFLOW_PAGES_AT: at + W.OVERFLOW_PAGES_AT + 4],
                                        "little"))
        pg += run
    return firsts


@pytest.mark.parametrize("field", ["flags", "page count"])
def test_a_damaged_overflow_header_fails_the_commit_not_the_process(base_store, tmp_path, field):
    """LMDB frees a segment's pages by the header of its overflow run, trusting
    it (a dirty flag read from disk aborted the process in mdb_ovpage_free,
    found by the fuzzer).  The sweep checks each header first: the commit that
    would free a damaged run fails with CorruptStoreError (the walker's first
    commit, which frees nothing, lands), and reads, which never use the
    header, still see every root."""
    blob = bytearray(base_store)
    runs = _overflow_runs(blob)
    assert len(runs) >= 3
    for pg in runs:
        at = pg * PAGE
        if field == "flags":
            blob[at + W.FLAGS_AT] |= 0x10                       # LMDB's P_DIRTY
        else:
            blob[at + W.OVERFLOW_PAGES_AT] += 1                 # one page too many
    path = str(tmp_path / "runs.cow")
    with open(path, "wb") as f:
        f.write(blob)
    outcome, detail = _run_walker(path, "walk-write")
    assert outcome == "clean" and "overflow page header is damaged" in detail, (outcome, detail)
    assert _run_walker(path, "walk") == ("ok", "OK 9 roots")
