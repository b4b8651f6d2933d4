"""Stores shared by real processes (no mocks): pool workers started by fork
and by spawn read store-backed values pickled by reference, writers in
several processes race, a writer is SIGKILLed in the middle of commits, a
plain os.fork keeps using the parent's handle, and readers keep their
snapshot while another process commits.

Worker functions live in _store_workers.py so spawned processes can import them.
"""
import concurrent.futures
import fcntl
import gc
import multiprocessing
import os
import pickle
import random
import signal
import tempfile
import time
import traceback

import pytest

import cowstore
import _store_workers as W

START_METHODS = ["fork", "spawn"]
N_RECORDS = 3000            # "thousands of records", still quick to checksum
MAX_REFERENCE_PICKLE = 1024  # bytes: a reference, not the data
JOIN_TIMEOUT = 60           # seconds; a hung worker fails the test instead of the run


def _chunks(n, parts):
    step = -(-n // parts)
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


def _parent_chunk_sums(dataset, parts):
    return [W.chunk_checksum(dataset, lo, hi) for lo, hi in _chunks(len(dataset), parts)]


def _race(method, target, argsets):
    """One process per argument tuple, released together by an event passed
    as each one's last argument (so they really race); joins them all."""
    ctx = multiprocessing.get_context(method)
    go = ctx.Event()
    procs = [ctx.Process(target=target, args=(*args, go)) for args in argsets]
    for p in procs:
        p.start()
    go.set()
    _join_all(procs)


def _join_all(procs):
    for p in procs:
        p.join(JOIN_TIMEOUT)
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
            pytest.fail(f"worker {p.pid} hung")
    codes = [p.exitcode for p in procs]
    assert codes == [0] * len(procs), f"worker exit codes {codes} (negative: killed by a signal)"


@pytest.fixture
def dataset_store(tmp_path):
    store = cowstore.open(str(tmp_path / "ds.cow"))
    store["ds"] = W.make_records(N_RECORDS)
    yield store
    store.close()


# -- pool workers read a dataset pickled by reference ------------------------------

@pytest.mark.parametrize("method", START_METHODS)
def test_pool_workers_read_dataset_by_reference(dataset_store, method):
    """Pool workers (fork and spawn) get a store-backed dataset of thousands of
    records as a small reference pickle, and read exactly the parent's data."""
    ds = dataset_store["ds"]
    blob = pickle.dumps(ds)
    assert len(blob) < MAX_REFERENCE_PICKLE, f"dataset pickled by value ({len(blob)} bytes)"
    expected = _parent_chunk_sums(ds, 6)
    row = ds[1234]
    assert len(pickle.dumps(row)) < MAX_REFERENCE_PICKLE        # a nested view: a reference too

    pool = multiprocessing.get_context(method).Pool(2)
    try:
        got = pool.starmap(W.chunk_checksum, [(ds, lo, hi) for lo, hi in _chunks(len(ds), 6)])
        row_sum = pool.apply(W.item_checksum, (row,))
    finally:
        pool.close()
        pool.join()
    assert got == expected
    assert row_sum == (W.checksum(row), "CowDict")
    assert [t for _, _, t in got] == ["CowList"] * 6    # workers read it store-backed


@pytest.mark.parametrize("method", START_METHODS)
def test_process_pool_executor_reads_dataset(dataset_store, method):
    """concurrent.futures.ProcessPoolExecutor workers get the same checksums."""
    ds = dataset_store["ds"]
    expected = _parent_chunk_sums(ds, 4)
    ctx = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=ctx) as ex:
        futures = [ex.submit(W.chunk_checksum, ds, lo, hi) for lo, hi in _chunks(len(ds), 4)]
        got = [f.result(timeout=JOIN_TIMEOUT) for f in futures]
        whole = ex.submit(W.pid_and_checksum, ds).result(timeout=JOIN_TIMEOUT)
    assert got == expected
    assert whole[0] != os.getpid() and whole[1] == W.checksum(ds)


@pytest.mark.parametrize("method", START_METHODS)
def test_reference_to_recommitted_root_raises_in_worker(dataset_store, method):
    """A reference pickled before its root was re-committed does not silently
    read the new version in another process: unpickling raises StoreError.
    Pickled again, it reads the new version."""
    old_blob = pickle.dumps(dataset_store["ds"])
    dataset_store["ds"] = W.make_records(10)
    new_value = dataset_store["ds"]
    new_blob = pickle.dumps(new_value)
    pool = multiprocessing.get_context(method).Pool(1)
    try:
        stale = pool.apply(W.load_reference, (old_blob,))
        fresh = pool.apply(W.load_reference, (new_blob,))
    finally:
        pool.close()
        pool.join()
    assert stale[0] == "error" and stale[2], stale
    assert fresh == ("ok", W.checksum(new_value), "CowList")


def test_a_reference_gone_stale_in_a_pool_queue_is_lost_as_guide_workers_says(dataset_store):
    """guide-workers.md: a reference whose root is re-committed while the
    task waits makes multiprocessing.Pool lose the task (its worker exits on
    the StoreError, an OSError, while receiving it: the result never comes)
    and ProcessPoolExecutor raise BrokenProcessPool.  The guide said only
    that unpickling raises StoreError, which a Pool user never sees."""
    row = dataset_store["ds"][7]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        busy = pool.apply_async(time.sleep, (1,))
        lost = pool.apply_async(W.item_checksum, (row,))       # pickled now, read after 1 s
        dataset_store["ds"] = W.make_records(10)
        busy.get(JOIN_TIMEOUT)
        with pytest.raises(multiprocessing.TimeoutError):
            lost.get(3)
    row = dataset_store["ds"][7]
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as ex:
        busy = ex.submit(time.sleep, 1)
        broken = ex.submit(W.item_checksum, row)
        dataset_store["ds"] = W.make_records(10)
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            broken.result(JOIN_TIMEOUT)


# -- a DataLoader without torch ------------------------------------------------------

@pytest.mark.parametrize("method", START_METHODS)
def test_dataloader_style_workers(dataset_store, method):
    """A Dataset holding a store-backed list, handed to worker processes the way
    torch's DataLoader does it (each takes every num_workers-th index)."""
    dataset = W.StoreDataset(dataset_store["ds"])
    assert len(pickle.dumps(dataset)) < MAX_REFERENCE_PICKLE
    expected = [dataset[i] for i in range(len(dataset))]
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    num_workers = 3
    procs = [ctx.Process(target=W.dataloader_worker, args=(dataset, wid, num_workers, queue))
             for wid in range(num_workers)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=JOIN_TIMEOUT) for _ in procs]
    _join_all(procs)
    got = [None] * len(dataset)
    pids = set()
    for wid, pid, items, error in results:
        assert error is None, f"worker {wid}: {error}"
        pids.add(pid)
        got[wid::num_workers] = items
    assert got == expected
    assert len(pids) == num_workers and os.getpid() not in pids


# -- anonymous stores: shared, then removed ------------------------------------------

def _anon_files(path):
    return [p for p in (path, path + "-lock") if os.path.exists(p)]


@pytest.mark.parametrize("method", START_METHODS)
def test_share_with_pool_workers(method):
    """cowstore.share(obj) reaches pool workers by reference; once every process
    is done with it the anonymous file (and its -lock) is gone."""
    # where share() puts it (the file is found by name: share() returns no store)
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    before = set(os.listdir(shm))
    data = W.make_records(1500)
    value = cowstore.share(data)
    mine = f"cowstore-anon-{os.getpid()}-"
    created = [os.path.join(shm, n) for n in set(os.listdir(shm)) - before
               if n.startswith(mine) and not n.endswith("-lock")]
    assert len(created) == 1, created
    path = created[0]
    assert len(pickle.dumps(value)) < MAX_REFERENCE_PICKLE
    expected = _parent_chunk_sums(value, 4)

    pool = multiprocessing.get_context(method).Pool(2)
    try:
        got = pool.starmap(W.chunk_checksum, [(value, lo, hi) for lo, hi in _chunks(len(value), 4)])
    finally:
        pool.close()
        pool.join()
    assert got == expected
    assert _anon_files(path), "removed while the parent still uses it"
    del value
    gc.collect()
    assert _anon_files(path) == []


def test_closing_last_handle_removes_anonymous_store():
    """open()'s contract: an anonymous store is removed when the last process
    using it closes it -- closing is enough, the closed handle may live on."""
    with cowstore.open() as store:
        path = store.path
        store["x"] = [1, 2]
        value = store["x"]
    assert _anon_files(path), "removed while a value read from it is alive"
    assert list(value) == [1, 2]
    del value
    gc.collect()
    leftover = _anon_files(path)
    for p in leftover:
        os.unlink(p)
    assert leftover == [], "a closed handle kept the anonymous store"
    assert store.closed and store.path == path


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("parent_first", [False, True], ids=["workers-exit-first", "parent-drops-first"])
def test_anonymous_store_removed_when_all_processes_done(method, parent_first):
    """An anonymous store (cowstore.open() without a path) used by pool workers
    is removed after the last process is done with it, whichever finishes last:
    the parent (after the pool is joined) or the workers (the parent dropped
    the store and its values while the workers were still alive)."""
    store = cowstore.open()
    path = store.path
    assert store.anonymous and path.startswith(("/dev/shm/cowstore-anon-", "/tmp"))
    store["ds"] = W.make_records(800)
    ds = store["ds"]
    expected = _parent_chunk_sums(ds, 2)
    ctx = multiprocessing.get_context(method)
    pool = ctx.Pool(2)
    try:
        got = pool.starmap(W.chunk_checksum, [(ds, lo, hi) for lo, hi in _chunks(len(ds), 2)])
        assert got == expected
        if parent_first:
            store.close()
            del store, ds
            gc.collect()
            if method == "fork":    # fork workers hold inherited copies of ds;
                # spawn workers dropped theirs after each task, so the parent was last
                assert _anon_files(path), "removed while fork workers still hold it"
    finally:
        pool.close()
        pool.join()
    if not parent_first:
        assert _anon_files(path)
        store.close()
        del store, ds
        gc.collect()
    leftover = _anon_files(path)
    for p in leftover:          # do not leave them in /dev/shm for the next run
        os.unlink(p)
    assert leftover == [], f"anonymous store left behind after every process finished: {leftover}"


def _wait_child(pid, timeout):
    """waitpid with a deadline: returns the status, or None after killing a hung child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _child_reads_and_reports(value, expected, go_r, out_w):
    """Body of an os.fork child: waits for go, reads value, reports, os._exit."""
    code = 1
    try:
        os.read(go_r, 1)
        got = list(value)
        os.write(out_w, repr(got).encode()[:500])
        code = 0 if got == expected else 2
    except BaseException as exc:
        os.write(out_w, repr(exc).encode()[:500])
    finally:
        os._exit(code)


def _unlocked(path):
    """True when no process holds a lock on the anonymous store file path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def test_parent_dropping_anonymous_store_right_after_fork():
    """The parent drops its last value of an anonymous store right after
    os.fork, while the child's at-fork hook is still taking its own lock:
    the file must survive for the child, which reads the right data (no hang,
    no empty value, no store re-created), and once both are done nobody holds
    it.  (Regression: the child hung, or read [] from a re-created store.)"""
    rounds, expected = 12, [1, 2, 3]
    failures = []
    for i in range(rounds):
        value = cowstore.share(expected)
        path = value._origin()[0][0].path      # internal, but share() gives no store
        go_r, go_w = os.pipe()
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            _child_reads_and_reports(value, expected, go_r, out_w)
        os.close(go_r)
        os.close(out_w)
        del value
        gc.collect()                            # the race: the child is in its at-fork hook
        os.write(go_w, b"x")
        os.close(go_w)
        status = _wait_child(pid, 5)
        with os.fdopen(out_r, "rb") as f:
            said = f.read().decode(errors="replace")
        if status is None:
            failures.append(f"round {i}: child hung (killed)")
        elif os.WIFSIGNALED(status):
            failures.append(f"round {i}: child killed by signal {os.WTERMSIG(status)}")
        elif os.WEXITSTATUS(status) != 0:
            failures.append(f"round {i}: child exit {os.WEXITSTATUS(status)}, read {said}")
        # The child left by os._exit (no finalizers run), so the file may stay
        # behind for a later sweep -- but no process may still hold it.
        if os.path.exists(path) and not _unlocked(path):
            failures.append(f"round {i}: still locked after both processes are done")
        for p in _anon_files(path):
            os.unlink(p)
        if status is None:
            break                               # one hang says enough; do not wait for more
    assert failures == []


def test_iterating_stored_list_of_containers_then_committing(tmp_path):
    """Regression (found by these tests): iterating a store-backed list whose
    items are containers left a stale corruption error behind, and the next
    commit of a container -- into any store -- raised CorruptStoreError."""
    with cowstore.open(str(tmp_path / "a.cow")) as a, cowstore.open(str(tmp_path / "b.cow")) as b:
        a["x"] = [[1], {"k": 2}, {3}]
        assert [cowstore.thaw(v) for v in a["x"]] == [[1], {"k": 2}, {3}]
        assert [cowstore.thaw(v) for v in reversed(a["x"])] == [{3}, {"k": 2}, [1]]
        b["y"] = [1]
        a["y"] = {"a": 1}
        assert list(b["y"]) == [1] and dict(a["y"]) == {"a": 1}


# -- writers racing ----------------------------------------------------------------

@pytest.mark.parametrize("method", START_METHODS)
def test_racing_transactions_lose_no_update(tmp_path, method):
    """Two processes each do N read-modify-write increments inside
    store.transaction(): the writer lock serializes them, the total is 2N."""
    n = 150
    path = str(tmp_path / "counter.cow")
    with cowstore.open(path) as store:
        store["counter"] = 0
    _race(method, W.increment_counter, [(path, "counter", n)] * 2)
    with cowstore.open(path, readonly=True) as store:
        assert store["counter"] == 2 * n


def test_racing_transactions_on_a_container_root(tmp_path):
    """Three processes increment fields of a dict root copy-on-write inside
    transactions: no lost update, each writer's own count is exact."""
    n, writers = 60, 3
    path = str(tmp_path / "dcounter.cow")
    with cowstore.open(path) as store:
        store["d"] = {"count": 0, "by": {}, "fixed": list(range(500))}
    _race("fork", W.increment_counter_dict, [(path, "d", f"w{w}", n) for w in range(writers)])
    with cowstore.open(path, readonly=True) as store:
        d = store["d"]
        assert d["count"] == n * writers
        assert dict(d["by"]) == {f"w{w}": n for w in range(writers)}
        assert list(d["fixed"]) == list(range(500))


def test_racing_plain_assignments(tmp_path):
    """Several processes assign the same root at once (no transaction): none
    fails, and the final value is one of the values written, intact."""
    times, writers = 80, 3
    path = str(tmp_path / "race.cow")
    with cowstore.open(path) as store:
        store["x"] = W.racing_value(-1, 0)
    _race("fork", W.assign_many, [(path, "x", w, times) for w in range(writers)])
    with cowstore.open(path, readonly=True) as store:
        final = cowstore.thaw(store["x"])
    assert final["worker"] in range(writers) and final["k"] in range(times)
    assert final == W.racing_value(final["worker"], final["k"])


# -- SIGKILL in the middle of commits ------------------------------------------------

def test_sigkill_during_commits_leaves_last_commit_readable(tmp_path):
    """A process committing big self-consistent versions in a loop is SIGKILLed
    at random moments; each time the store reopens, its last committed version
    is whole and consistent (never a half-written one), and commits work."""
    rng = random.Random(20240501)
    path = str(tmp_path / "crash.cow")
    ctx = multiprocessing.get_context("fork")
    last = -1
    for round_no in range(6):
        started = ctx.Event()
        first = last + 1
        child = ctx.Process(target=W.commit_forever, args=(path, first, started))
        child.start()
        assert started.wait(JOIN_TIMEOUT), "writer never committed"
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        child.join(JOIN_TIMEOUT)
        assert child.exitcode == -signal.SIGKILL

        with cowstore.open(path) as store:
            k = W.check_version(store["v"])
            assert k >= first, f"round {round_no}: version {k} older than the writer's first {first}"
            for name in store.names():
                if name.startswith("side"):
                    side = store[name]
                    assert list(side["junk"]) == list(range(side["k"] % 200))
            # the dead writer's lock and reader slot do not block a new commit
            store["v"] = W.consistent_version(k + 1)
            assert W.check_version(store["v"]) == k + 1
            last = k + 1
    with cowstore.open(path, readonly=True) as store:
        assert W.check_version(store["v"]) == last


# -- a plain os.fork without reopening -----------------------------------------------

def test_fork_child_uses_inherited_handle_and_values(tmp_path):
    """After os.fork (no re-open by the user) the child reads the inherited
    value, reads roots committed before and after the fork, commits a root and
    runs a transaction; it exits 0 and the parent, with its old handle, sees
    the child's commits while its own old values stay intact."""
    path = str(tmp_path / "fork.cow")
    store = cowstore.open(path)
    store["a"] = {"rows": [{"i": i, "s": f"row{i}"} for i in range(400)], "n": 400}
    store["b"] = ["before", "fork", 2 ** 100]
    store["counter"] = 10
    a = store["a"]
    assert a["rows"][7]["s"] == "row7"          # read (and mapped) before the fork
    a_sum = W.checksum(a)

    go_r, go_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:                                # the child: always leaves by os._exit
        code = 1
        try:
            os.close(go_w)
            os.close(err_r)
            assert W.checksum(a) == a_sum
            assert a["rows"][399]["s"] == "row399"
            assert list(store["b"]) == ["before", "fork", 2 ** 100]
            os.read(go_r, 1)                    # the parent committed "after"
            assert dict(store["after"]) == {"from": "parent"}
            store["child"] = {"pid": os.getpid(), "data": list(range(1000))}
            with store.transaction():
                store["counter"] = store["counter"] + 5
            assert store["child"]["pid"] == os.getpid()
            code = 0
        except BaseException:
            os.write(err_w, traceback.format_exc().encode()[-4000:])
        finally:
            os._exit(code)
    os.close(go_r)
    os.close(err_w)
    store["after"] = {"from": "parent"}
    os.write(go_w, b"x")
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(err_r, "rb") as f:
        child_error = f.read().decode(errors="replace")
    assert not os.WIFSIGNALED(status), f"child killed by signal {os.WTERMSIG(status)}"
    assert os.WEXITSTATUS(status) == 0, child_error

    child = store["child"]
    assert child["pid"] == pid and list(child["data"]) == list(range(1000))
    assert store["counter"] == 15
    assert W.checksum(a) == a_sum
    store["parent-after"] = 1                   # the parent's handle still commits
    assert store["parent-after"] == 1
    store.close()


# -- snapshots survive other processes' commits ---------------------------------------

def test_reader_keeps_snapshot_while_another_process_commits(tmp_path):
    """A value read before another process commits new versions (replacing,
    deleting and re-creating the root, then compacting) still reads the old
    version, in full; reading the root again gives the newest."""
    path = str(tmp_path / "snap.cow")
    store = cowstore.open(path)
    store["r"] = W.snapshot_version(0)
    snap = store["r"]
    first_rows = snap["rows"]
    before = W.checksum(snap)
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=W.commit_versions, args=(path, "r", 1, 13, True))
    p.start()
    _join_all([p])
    assert W.checksum(snap) == before
    assert snap["k"] == 0 and first_rows[299]["s"] == "0:299"
    assert store["r"]["k"] == 12
    assert W.checksum(store["r"]) == W.checksum(W.snapshot_version(12))
    store.close()
    assert W.checksum(snap) == before           # closing the handle keeps read values


@pytest.mark.parametrize("method", START_METHODS)
def test_snapshot_in_child_survives_parent_commits(tmp_path, method):
    """The other way round: a child process holds a snapshot while the parent
    commits (and compacts); the child's snapshot is unchanged, a fresh read in
    the child sees the parent's last version."""
    path = str(tmp_path / "snap2.cow")
    store = cowstore.open(path)
    store["r"] = W.snapshot_version(0)
    ctx = multiprocessing.get_context(method)
    ready, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    p = ctx.Process(target=W.hold_snapshot, args=(path, "r", ready, go, results))
    p.start()
    assert ready.wait(JOIN_TIMEOUT)
    for k in range(1, 9):
        store["r"] = W.snapshot_version(k)
    store.compact()
    go.set()
    before, after, snap_k, latest, error = results.get(timeout=JOIN_TIMEOUT)
    _join_all([p])
    assert error is None, error
    assert before == after == W.checksum(W.snapshot_version(0))
    assert snap_k == 0 and latest == 8
    store.close()


def test_fork_inside_a_transaction_does_not_deadlock(tmp_path):
    """The child reopens every store it inherited; it used to do so with a
    write transaction, waiting for the writer lock its parent holds while
    the parent waited for it.  Now the reopen only reads."""
    s = cowstore.open(str(tmp_path / "f.cow"))
    with s.transaction():
        s["p"] = 1
        pid = os.fork()
        if pid == 0:
            os._exit(0 if "p" not in cowstore.open(str(tmp_path / "f.cow")) else 1)
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0
    assert s["p"] == 1
    s.close()


def _hold_a_transaction(path, inside, release):
    s = cowstore.open(path)
    with s.transaction():
        s["held"] = 1
        inside.set()
        release.wait(30)


def test_opening_a_store_does_not_wait_for_another_process_writer(tmp_path):
    """Opening an existing store reads its databases in a read transaction:
    it used to take a write transaction, waiting (holding the GIL) until
    another process's transaction ended."""
    path = str(tmp_path / "o.cow")
    cowstore.open(path).close()
    ctx = multiprocessing.get_context("fork")
    inside, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_a_transaction, args=(path, inside, release))
    holder.start()
    try:
        assert inside.wait(30)
        started = time.monotonic()
        s = cowstore.open(path)
        opened_in = time.monotonic() - started
        assert "held" not in s          # the holder's write is not committed yet
        s.close()
    finally:
        release.set()
        holder.join(30)
    assert opened_in < 2 and holder.exitcode == 0


def test_values_of_a_readonly_store_unpickle_here_and_in_fork_workers(tmp_path):
    """A reference is resolved by opening the file writable when it is, which
    this process refused while it had the file open readonly: unpickling
    failed here, and a fork Pool respawned its workers for ever."""
    path = str(tmp_path / "ro.cow")
    with cowstore.open(path) as s:
        s["rows"] = [{"a": i} for i in range(100)]
    ro = cowstore.open(path, readonly=True)
    rows = ro["rows"]
    assert pickle.loads(pickle.dumps(rows)) == rows
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map_async(len, [rows, rows]).get(timeout=60) == [100, 100]
    ro.close()
