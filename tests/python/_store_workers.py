"""Worker functions for tests/python/test_store_processes.py and test_store_fuzz.py.

They live in a module of their own (not in the test files) so that spawned
processes can import them by name without importing pytest's test module.
Run as a script (``python _store_workers.py walk PATH``) it is the corruption
fuzzer's reader: it opens a store readonly and touches every value in it
(``walk-write``: opens it writable, and commits a root after the walk).
Before the walk it runs the set algebra on the stored sets (_set_algebra).
"""
import hashlib
import operator
import os
import pickle
import signal
import sys
import traceback

import cowstore
from cowstore import CowDict, CowList, CowSet, FrozenDict, FrozenList, FrozenSet

_MAPS = (CowDict, FrozenDict, dict)
_SEQS = (CowList, FrozenList, list, tuple)
_SETS = (CowSet, FrozenSet, set, frozenset)


# -- checksums -------------------------------------------------------------------

# LMDB page header flags (lmdb.h: P_BRANCH, P_LEAF, P_OVERFLOW, P_META) at
# byte 10 of a page, and an overflow run's page count at byte 12.
P_BRANCH, P_LEAF, P_OVERFLOW, P_META = 0x01, 0x02, 0x04, 0x08
FLAGS_AT, OVERFLOW_PAGES_AT = 10, 12


def lmdb_btree_pages(blob, page):
    """The pages of LMDB's own meta pages and B-trees (branch and leaf pages).

    LMDB keeps no checksums and trusts these: a damaged leaf node of the segs
    database can make mdb_get itself read outside the map and crash
    (store-design.md, "Limits of these checks"), which no check of ours can
    prevent.  What cowstore reads and checks -- segments and the nodes in
    them, in overflow pages -- and the free pages stay fair game; damaged
    root and state records are the C tests' (hostile_records_fail_cleanly)."""
    pages, n, pg = set(), len(blob) // page, 0
    while pg < n:
        flags = int.from_bytes(blob[pg * page + FLAGS_AT: pg * page + FLAGS_AT + 2], "little")
        run = 1
        if pg < 2 or flags & (P_BRANCH | P_LEAF | P_META):
            pages.add(pg)
        elif flags & P_OVERFLOW:                        # skip its continuation pages
            at = pg * page + OVERFLOW_PAGES_AT
            run = max(1, min(int.from_bytes(blob[at:at + 4], "little"), n - pg))
        pg += run
    return pages


def _feed(h, value):
    """Feeds a canonical encoding of value to h: dict and set order do not
    matter, store-backed and plain containers of equal content hash alike."""
    if isinstance(value, _MAPS):
        h.update(b"{%d" % len(value))
        for key in sorted(value, key=repr):
            _feed(h, key)
            _feed(h, value[key])
        h.update(b"}")
    elif isinstance(value, _SEQS):
        h.update(b"[%d" % len(value))
        for item in value:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(value, _SETS):
        h.update(b"<%d" % len(value))
        for item in sorted(value, key=repr):
            _feed(h, item)
        h.update(b">")
    else:
        h.update(type(value).__name__.encode())
        h.update(repr(value).encode())
        h.update(b";")


def checksum(value):
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def make_records(n):
    """A dataset of n small nested records."""
    return [{"id": i, "name": f"record-{i}", "tags": [i % 7, i % 11],
             "vec": [float(i) / 3, -i], "big": 3 ** (i % 50)} for i in range(n)]


def chunk_checksum(dataset, start, stop):
    """The checksum of dataset[start:stop], read item by item (by index)."""
    h = hashlib.sha256()
    for i in range(start, stop):
        _feed(h, dataset[i])
    return start, h.hexdigest(), type(dataset).__name__


def item_checksum(item):
    return checksum(item), type(item).__name__


def pid_and_checksum(dataset):
    return os.getpid(), checksum(dataset)


def load_reference(blob):
    """Unpickles blob in this process: ("ok", checksum) or ("error", exception class)."""
    try:
        value = pickle.loads(blob)
    except Exception as exc:
        return "error", type(exc).__name__, isinstance(exc, cowstore.StoreError)
    return "ok", checksum(value), type(value).__name__


# -- a DataLoader without torch ----------------------------------------------------

class StoreDataset:
    """What a torch Dataset would be: len() and integer indexing over a
    store-backed list of records.  Pickling it pickles the list by reference."""

    def __init__(self, records):
        self.records = records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        rec = self.records[index]
        return rec["id"], checksum(rec)


def dataloader_worker(dataset, worker_id, num_workers, queue):
    """Like a torch DataLoader worker: takes every num_workers-th index."""
    try:
        out = [dataset[i] for i in range(worker_id, len(dataset), num_workers)]
        queue.put((worker_id, os.getpid(), out, None))
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put((worker_id, os.getpid(), None, repr(exc)))


# -- writers racing ----------------------------------------------------------------

def increment_counter(path, name, times, start_event):
    """times read-modify-write increments of store[name] inside transactions."""
    start_event.wait(30)
    store = cowstore.open(path, durable=False)
    try:
        for _ in range(times):
            with store.transaction():
                store[name] = store[name] + 1
    finally:
        store.close()


def increment_counter_dict(path, name, worker, times, start_event):
    """Like increment_counter, on a container root: {"count": n, "by": {worker: k}}."""
    start_event.wait(30)
    store = cowstore.open(path, durable=False)
    try:
        for _ in range(times):
            with store.transaction():
                d = store[name]
                d["count"] += 1
                d["by"][worker] = d["by"].get(worker, 0) + 1
                store[name] = d
    finally:
        store.close()


def racing_value(worker, k):
    return {"worker": worker, "k": k, "payload": [worker] * (k % 17 + 1),
            "text": f"w{worker}-k{k}" * 3}


def assign_many(path, name, worker, times, start_event):
    """times plain assignments store[name] = racing_value(worker, k)."""
    start_event.wait(30)
    store = cowstore.open(path, durable=False)
    try:
        for k in range(times):
            store[name] = racing_value(worker, k)
    finally:
        store.close()


# -- crash during commit ---------------------------------------------------------

VERSION_CYCLE = 40      # version k holds (k % VERSION_CYCLE) * 1000 numbers


def consistent_version(k):
    data = list(range((k % VERSION_CYCLE) * 1000))
    return {"n": k, "data": data, "check": sum(data), "tail": {"k": k, "s": str(k) * 50}}


def check_version(value):
    """Raises AssertionError unless value is one consistent_version(k); returns k."""
    k = value["n"]
    data = list(value["data"])
    assert len(data) == (k % VERSION_CYCLE) * 1000, (k, len(data))
    assert data == list(range(len(data))), k
    assert value["check"] == sum(data), k
    assert value["tail"]["k"] == k and value["tail"]["s"] == str(k) * 50, k
    return k


def commit_forever(path, first, started_event):
    """Commits consistent versions first, first+1, ... of root "v" until killed."""
    store = cowstore.open(path)
    k = first
    while True:
        store["v"] = consistent_version(k)
        if k % 3 == 0:
            store[f"side{k % 5}"] = {"k": k, "junk": list(range(k % 200))}
        if k == first:
            started_event.set()
        k += 1


# -- snapshots ------------------------------------------------------------------

def snapshot_version(k):
    return {"k": k, "rows": [{"i": i, "k": k, "s": f"{k}:{i}"} for i in range(300)]}


def commit_versions(path, name, first, last, compact):
    store = cowstore.open(path)
    try:
        for k in range(first, last):
            store[name] = snapshot_version(k)
            if k % 4 == 0:
                del store[name]
                store[name] = snapshot_version(k)
        if compact:
            store.compact()
    finally:
        store.close()


def hold_snapshot(path, name, ready, go, result_queue):
    """Reads store[name], signals ready, waits for go, then re-checks it."""
    try:
        store = cowstore.open(path)
        snap = store[name]
        before = checksum(snap)
        ready.set()
        go.wait(30)
        after = checksum(snap)
        latest = store[name]["k"]
        result_queue.put((before, after, snap["k"], latest, None))
    except BaseException as exc:
        result_queue.put((None, None, None, None, repr(exc)))


# -- the fuzzer's reader -----------------------------------------------------------

# Exit codes of `python _store_workers.py walk PATH`.
WALK_OK = 0
WALK_CLEAN_ERROR = 3        # a CowstoreError (or an allowed builtin one): printed on stdout
WALK_BAD_ERROR = 4          # any other exception: a bug
WALK_ALLOWED = (cowstore.CowstoreError, OSError, ValueError, KeyError, UnicodeDecodeError)


def _touch(value, depth=0):
    """Reads everything under value in every way the API offers."""
    if depth > 200:
        raise RecursionError("walk deeper than any stored value")
    if isinstance(value, _MAPS):
        len(value)
        keys = list(value)
        for key in keys:
            _touch(key, depth + 1)
            _touch(value[key], depth + 1)
            _ = key in value
            value.get(key)
        for key, item in value.items():     # each child is walked once (above), else
            type(item)                      # a deep tree would take 2**depth steps
        list(value.values())
        _ = "no-such-key-\x00" in value
        value.get(("no", "such"), None)
        repr(value)
    elif isinstance(value, _SEQS):
        n = len(value)
        for item in value:
            _touch(item, depth + 1)
        for i in range(n):
            value[i]
        if n:
            value[-1]
            value[n // 2:]
            list(reversed(value))
        repr(value)
    elif isinstance(value, _SETS):
        len(value)
        for item in value:
            _touch(item, depth + 1)
            _ = item in value
        _ = "no-such-member-\x00" in value
        repr(value)
    else:
        repr(value)
        hash(value) if isinstance(value, (str, bytes, int, float)) else None


# -- the set algebra on damaged sets ---------------------------------------------

class SetAlgebraEscape(Exception):
    """A set operation on a stored set raised something else than
    CorruptStoreError: a bug (not in WALK_ALLOWED, so the walk is BAD)."""


class _SetOps:
    """Runs operations one by one, each allowed to fail with CorruptStoreError
    alone (counted): the damage then meets every operation, not only the first."""

    def __init__(self):
        self.ops = self.corrupt = 0

    def run(self, name, fn):
        self.ops += 1
        try:
            result = fn()
            if isinstance(result, _SETS):
                list(result)            # a result's nodes may still lie in the pages
            return result
        except cowstore.CorruptStoreError:
            self.corrupt += 1
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1]
            raise SetAlgebraEscape(f"{name}: {type(exc).__qualname__}: {exc} [raised at "
                                   f"{os.path.basename(where.filename)}:{where.lineno}]") from exc
        return None


# `|` `&` `-` `^`, the subset tests and `==`: for sets of ours with stored
# operands the core walks their keys (set_algebra.c), with builtin sets the
# element loops of set.c and _set.py
_BINARY = [("|", operator.or_), ("&", operator.and_), ("-", operator.sub), ("^", operator.xor),
           ("issubset", lambda x, y: x.issubset(y)), ("issuperset", lambda x, y: x.issuperset(y)),
           ("isdisjoint", lambda x, y: x.isdisjoint(y)), ("==", operator.eq), ("<", operator.lt)]
_IN_PLACE = [("|=", operator.ior), ("&=", operator.iand), ("-=", operator.isub),
             ("^=", operator.ixor), ("update", CowSet.update),
             ("intersection_update", CowSet.intersection_update),
             ("difference_update", CowSet.difference_update),
             ("symmetric_difference_update", CowSet.symmetric_difference_update)]
# in every base store (see test_store_fuzz._set_data) and absent from them
_PROBES = (0, 3, "s0", "s4", 1.5, (1, 2), b"1", "no-such-member")


def _children(run, path, mapping):
    """(path + (key,), value) for each key of mapping that reads without an error."""
    keys = run.run(f"keys of {path}", lambda: list(mapping)) or []
    return [(path + (key,), value) for key in keys
            if (value := run.run(f"{path}[{key!r}]", lambda: mapping[key])) is not None]


def _writable(s, i):
    """A CowSet holding s's elements: for a set of ours one sharing its
    stored nodes, by copy() or CowSet(s) by turns (FrozenSet has no in-place
    operators); else a heap one."""
    if isinstance(s, CowSet) and i % 2:
        return s.copy()
    return CowSet(s)


def _set_algebra(store, write):
    """The set algebra with stored sets on either side (against each other,
    heap CowSets and builtin sets), in place on copies whose nodes lie in the
    pages and on the stored views themselves; written back when writable.
    Returns (operations run, CorruptStoreError raised)."""
    run = _SetOps()
    if "sets" not in store.names():
        return run.ops, run.corrupt

    def stored_at(path):    # a new view: its nodes all in the pages
        value = store[path[0]]
        for key in path[1:]:
            value = value[key]
        return value

    sets = run.run("read sets", lambda: stored_at(("sets",)))
    stored = {}             # path: set, for the sets in sets and in a dict in it
    for path, value in _children(run, ("sets",), sets) if sets is not None else []:
        for path, value in _children(run, path, value) if isinstance(value, _MAPS) else [(path, value)]:
            if isinstance(value, _SETS):
                stored[path] = value
    heap = CowSet(list(range(0, 450, 5)) + [f"s{i}" for i in range(0, 300, 4)])
    builtin = set(heap)
    small_builtin = {3, "s4", 99}
    others = [("heap", heap), ("builtin", builtin), ("small builtin", small_builtin),
              ("small heap", CowSet(small_builtin))]
    paths = sorted(stored, key=repr)
    pairs = [((a, stored[a]), (b, stored[b])) for a in paths for b in paths]     # x op x too
    pairs += [((a, stored[a]), other) for a in paths for other in others]
    pairs += [(other, (a, stored[a])) for a in paths for other in others[:2]]   # reflected
    for (xn, x), (yn, y) in pairs:
        for op, fn in _BINARY:
            run.run(f"{xn} {op} {yn}", lambda: fn(x, y))
        if xn in stored or yn in stored:
            for i, (op, fn) in enumerate(_IN_PLACE):
                run.run(f"{xn} {op} {yn}", lambda: fn(_writable(x, i), y))
    for path in paths:
        for i, probe in enumerate(_PROBES):
            w = _writable(stored[path], i)
            run.run(f"{path}.discard({probe!r})", lambda: w.discard(probe))
            run.run(f"{path}.remove({probe!r})", lambda: probe in w and w.remove(probe))
    # in place on stored views, each a new one: a write copies a path out of the
    # pages; against sets of ours (the core's walks) and builtin ones by turns
    operands = [heap, small_builtin] + [stored[p] for p in paths]
    for path in paths:
        if isinstance(stored[path], CowSet):
            for i, (op, fn) in enumerate(_IN_PLACE):
                y = operands[i % len(operands)]
                run.run(f"stored {path} {op}", lambda: fn(stored_at(path), y))
                run.run(f"stored {path}.discard", lambda: stored_at(path).discard(_PROBES[i]))
    if write and sets is not None:
        # the commit of sets changed in place, nodes from the pages among them
        for path in paths:
            if isinstance(stored[path], CowSet):
                run.run(f"{path} ^= small builtin", lambda: operator.ixor(stored[path], small_builtin))
        run.run("write back", lambda: store.__setitem__("sets", sets))
    return run.ops, run.corrupt


def _write_into_records(store):
    """Writes into stored records through views, as a program updating its
    dataset does -- a scalar into a field (a new pack made from the damaged
    one), an append into a nested list (materialised, then packed again) --
    and commits them."""
    for root, nested in (("records", "tags"), ("rows", "vals")):
        if root not in store:
            continue
        rows = store[root]
        for i in range(0, min(len(rows), 800), 37):
            record = rows[i]
            if not isinstance(record, cowstore.CowDict):
                continue
            record["name"] = f"walked-{i}"
            if isinstance(record.get(nested), cowstore.CowList):
                record[nested].append(i)
        store[root] = rows


def walk(path, write=False):
    store = cowstore.open(path, readonly=not write)
    store.stats()
    names = store.names()
    len(store)
    # first: a damaged read in there is tolerated, and the commits below
    # replace or delete the root of the sets
    ops, corrupt = _set_algebra(store, write)
    print(f"SETS {ops} ops, {corrupt} CorruptStoreError")
    if write and names:
        # the commit path on a damaged file, before any read could fail:
        # a new root, a replaced one (frees its segments), a deleted one
        store["fuzz-first-root"] = {"n": [1, 2, 3], "s": "x" * 100}
        store[names[0]] = {"replaced": True}
        del store[names[-1]]
        names = store.names()
    for name in names:
        _ = name in store
        value = store[name]
        _touch(value)
        cowstore.thaw(value)
    for name, value in store.items():
        len(value) if hasattr(value, "__len__") else None
    for old, new in zip(names, names[1:]):
        list(cowstore.diff(store[old], store[new]))
    if write:
        _write_into_records(store)
        store["fuzz-new-root"] = {"after": list(names), "n": [1, 2, 3]}
        assert list(store["fuzz-new-root"]["n"]) == [1, 2, 3]
    store.close()
    return names


def walk_main(path, write=False):
    try:
        names = walk(path, write)
    except WALK_ALLOWED as exc:
        family = "cowstore" if isinstance(exc, cowstore.CowstoreError) else "builtin"
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"CLEAN {family} {type(exc).__module__}.{type(exc).__qualname__}: {exc}"[:400]
              + f" [at {os.path.basename(where.filename)}:{where.lineno} {where.line}]")
        sys.stdout.flush()
        os._exit(WALK_CLEAN_ERROR)
    except BaseException as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"BAD {type(exc).__module__}.{type(exc).__qualname__}: {exc}"[:400]
              + f" [at {os.path.basename(where.filename)}:{where.lineno} {where.line}]")
        sys.stdout.flush()
        os._exit(WALK_BAD_ERROR)
    print(f"OK {len(names)} roots")
    sys.stdout.flush()
    os._exit(WALK_OK)


def _limit_memory():
    # A corrupt length must not let the reader eat the machine: past this it
    # gets MemoryError (a bug to report, not a dead test runner).  RLIMIT_DATA
    # counts heap and private mappings, not LMDB's shared file map (RLIMIT_AS
    # would: the store reserves a large address range up front).
    # Not under ASan (make test-sanitize preloads it): its shadow memory would
    # not fit.
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        return
    import resource
    limit = 4 << 30
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("walk", "walk-write"):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)   # a hang ends as SIGALRM: a failure
        signal.alarm(60)
        _limit_memory()
        # A debug build re-validates each container written (COW_DEBUG); a
        # write copies damaged nodes to the heap as they are, which those
        # checks, made for sound nodes, report as a broken invariant.  What
        # is tested here is that damage raises CorruptStoreError.
        cowstore._cowstore._debug_checks(False)
        walk_main(sys.argv[2], write=sys.argv[1] == "walk-write")
    print("usage: _store_workers.py walk|walk-write PATH", file=sys.stderr)
    sys.exit(2)
