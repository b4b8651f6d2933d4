"""Stores used from many threads (docs/semantics.md, "Threads").

Real threads on one shared Store and on per-thread open() of one file:
counters that must end exact, readers that check an invariant of every
version they see, pending writes that other threads must not see, a second
writer that waits for the first, and the GIL let go while a thread waits.
COWSTORE_SLOW=1 runs the longer versions.
"""
import os
import sys
import threading
import time

import pytest

import cowstore
from cowstore import CowDict

SLOW = os.environ.get("COWSTORE_SLOW") == "1"
THREADS = 4
INCREMENTS = 400 if SLOW else 60
# How long a test waits for something that must happen (a thread to block,
# a thread to finish): generous, so a loaded CI machine does not flake.
PATIENCE = 30


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "t.cow")


def _run_threads(targets):
    """Runs the callables in threads started together; re-raises the first
    exception any of them raised."""
    errors = []
    start = threading.Barrier(len(targets))

    def wrap(fn):
        def run():
            try:
                start.wait()
                fn()
            except BaseException as e:     # noqa: BLE001 -- reported below
                errors.append(e)
        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENCE * 4)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]


def _increment(store, n):
    for _ in range(n):
        with store.transaction():
            store["c"] = store["c"] + 1


def test_counter_on_one_shared_store(path):
    with cowstore.open(path, durable=False) as s:
        s["c"] = 0
        _run_threads([lambda: _increment(s, INCREMENTS)] * THREADS)
        assert s["c"] == THREADS * INCREMENTS


def test_counter_with_an_open_per_thread(path):
    with cowstore.open(path, durable=False) as s:
        s["c"] = 0

    def worker():
        with cowstore.open(path, durable=False) as mine:
            _increment(mine, INCREMENTS)

    _run_threads([worker] * THREADS)
    with cowstore.open(path) as s:
        assert s["c"] == THREADS * INCREMENTS


def test_counter_in_a_container_mixed_with_plain_assignments(path):
    """Transactions and plain assignments (each its own transaction) from
    different threads: every increment lands, no environment error."""
    with cowstore.open(path, durable=False) as s:
        s["d"] = {"n": 0}

        def bump():
            for _ in range(INCREMENTS):
                with s.transaction():
                    d = s["d"]
                    d["n"] += 1
                    s["d"] = d

        def scribble():
            for i in range(INCREMENTS):
                s[f"other{i % 3}"] = list(range(i))

        _run_threads([bump, bump, scribble])
        assert s["d"]["n"] == 2 * INCREMENTS


def test_readers_see_whole_versions_only(path):
    """Each commit keeps sum(row) == 0 and len(row) == version; readers in
    threads must never see a mix of two versions."""
    versions = 150 if SLOW else 40
    with cowstore.open(path, durable=False) as s:
        s["row"] = [0]
        done = threading.Event()
        reading = threading.Barrier(3)      # the writer starts once both readers read
        seen = []

        def writer():
            try:
                reading.wait(PATIENCE)
                for v in range(2, versions + 2):
                    time.sleep(0.002)       # let the readers in between versions
                    with s.transaction():
                        row = s["row"]
                        row.append(0)
                        row[0] = -(len(row) - 1) * v
                        for i in range(1, len(row)):
                            row[i] = v
                        s["row"] = row
            finally:
                done.set()

        def reader():
            first = True
            while first or not done.is_set():
                row = s["row"]
                values = list(row)
                assert sum(values) == 0, values
                assert len(set(values[1:])) <= 1, values
                seen.append(len(values))
                if first:
                    reading.wait(PATIENCE)
                    first = False

        _run_threads([writer, reader, reader])
        assert s["row"][1] == versions + 1
        assert len(set(seen)) > 1, "readers saw a single version: the test proved nothing"


def test_pending_writes_are_invisible_to_other_threads(path):
    with cowstore.open(path, durable=False) as s:
        s["old"] = 1
        inside, check_done = threading.Event(), threading.Event()
        seen = {}

        def writer():
            with s.transaction():
                s["new"] = 2
                del s["old"]
                assert "new" in s and "old" not in s      # the writer sees its own
                inside.set()
                assert check_done.wait(PATIENCE)

        def other():
            assert inside.wait(PATIENCE)
            seen["names"] = s.names()
            seen["old"] = s.get("old")
            seen["new"] = s.get("new")
            check_done.set()

        _run_threads([writer, other])
        assert seen == {"names": ["old"], "old": 1, "new": None}
        assert s.names() == ["new"]


def test_a_second_writer_waits_and_the_gil_is_free_meanwhile(path):
    """While thread A holds a transaction, B's transaction waits for it --
    and A, the main thread and others keep running Python (B let the GIL
    go).  B then sees A's commit."""
    with cowstore.open(path, durable=False) as s:
        s["c"] = 0
        a_inside, b_waiting, release_a = threading.Event(), threading.Event(), threading.Event()
        order = []

        def a():
            with s.transaction():
                a_inside.set()
                assert release_a.wait(PATIENCE)
                s["c"] = s["c"] + 1
                order.append("a")

        def b():
            assert a_inside.wait(PATIENCE)
            b_waiting.set()
            with s.transaction():
                order.append("b")
                s["c"] = s["c"] * 10

        ta, tb = threading.Thread(target=a), threading.Thread(target=b)
        ta.start()
        tb.start()
        assert b_waiting.wait(PATIENCE)
        time.sleep(0.2)                     # B is now blocked in begin
        ticks = sum(1 for _ in range(100_000))     # the main thread runs meanwhile
        assert ticks == 100_000 and order == []
        release_a.set()
        ta.join(PATIENCE)
        tb.join(PATIENCE)
        assert not ta.is_alive() and not tb.is_alive()
        assert order == ["a", "b"]
        assert s["c"] == 10


def test_transactions_in_one_thread_join_across_handles(path):
    with cowstore.open(path, durable=False) as s1, cowstore.open(path, durable=False) as s2:
        with s1.transaction():
            s2["x"] = 1                     # joins s1's transaction: no deadlock
            s1["y"] = 2
            assert s2["y"] == 2
        assert s1.names() == ["x", "y"]


def test_closing_inside_a_transaction_aborts_it(path):
    with cowstore.open(path, durable=False) as keep:
        s = cowstore.open(path, durable=False)
        with pytest.raises(cowstore.StoreError, match="were not committed"):
            with s.transaction():
                s["x"] = 1
                s.close()
        assert "x" not in keep
        with pytest.raises(cowstore.StoreError, match="were not committed"):
            with keep.transaction():        # another handle of the file, closed
                keep["x"] = 1
                cowstore.open(path).close()
        assert "x" not in keep
        keep["y"] = 1                       # the writer gate was let go
        assert keep["y"] == 1


def test_closing_while_another_thread_waits_to_write(path):
    """The last handle closed by one thread while another waits for the
    writer gate: the waiter gets an error, nothing crashes."""
    s = cowstore.open(path, durable=False)
    s["c"] = 0
    holding, waiting = threading.Event(), threading.Event()
    outcome = []

    def holder():
        with s.transaction():
            holding.set()
            assert waiting.wait(PATIENCE)
            time.sleep(0.2)                 # the waiter is blocked in begin now
            s["c"] = 1

    def waiter():
        assert holding.wait(PATIENCE)
        waiting.set()
        try:
            with s.transaction():
                s["c"] = 2
            outcome.append("wrote")
        except cowstore.StoreError as e:
            outcome.append(str(e))

    _run_threads([holder, waiter])
    s.close()
    with cowstore.open(path) as again:
        assert again["c"] in (1, 2)
    assert outcome in (["wrote"],) or "closed" in outcome[0]


def test_values_read_in_one_thread_are_used_in_others(path):
    with cowstore.open(path, durable=False) as s:
        s["m"] = {str(i): list(range(i % 7)) for i in range(2000)}
        m = s["m"]
        sums = []

        def use():
            sums.append(sum(len(v) for v in m.values()))

        _run_threads([use] * THREADS)
        assert len(set(sums)) == 1 and sums[0] == sum(i % 7 for i in range(2000))


def test_adopting_after_commit_under_racing_writers(path):
    """A container assigned in a transaction adopts the pages of its own put
    even while other threads rewrite the same root right after."""
    with cowstore.open(path, durable=False) as s:
        mine = CowDict({"who": "mine", "n": 0})
        s["r"] = {"who": "init"}

        def rewrite():
            for i in range(INCREMENTS):
                s["r"] = {"who": "other", "n": i}

        def assign():
            for i in range(INCREMENTS):
                mine["n"] = i
                s["r"] = mine
                assert mine["who"] == "mine" and mine["n"] == i

        _run_threads([rewrite, assign])


def test_a_transaction_left_from_another_thread_is_refused_and_then_aborted(path):
    """Its writer lock is its thread's: leaving it elsewhere raises there
    (it used to fail with AttributeError, leaving the transaction open for
    ever and its thread's later writes silently uncommitted), and the
    owner's next write aborts it and raises; writes after that commit."""
    s = cowstore.open(path)
    cm = s.transaction()
    cm.__enter__()
    s["cross"] = 1
    errors = []

    def leave():
        try:
            cm.__exit__(None, None, None)
        except cowstore.StoreError as exc:
            errors.append(exc)

    other = threading.Thread(target=leave)
    other.start()
    other.join()
    assert len(errors) == 1 and "left in the thread that entered it" in str(errors[0])
    with pytest.raises(cowstore.StoreError, match="aborted now"):
        s["z"] = 1
    s["z"] = 2
    with cowstore.open(path) as again:
        assert dict(again) == {"z": 2}
    s.close()


def _write_in_a_thread(store, name):
    """Whether another thread's write to store completed in time (a writer
    lock left held makes it wait for ever)."""
    done = []
    t = threading.Thread(target=lambda: (store.__setitem__(name, 1), done.append(1)),
                         daemon=True)
    t.start()
    t.join(PATIENCE)
    return bool(done)


@pytest.mark.parametrize("after", ["_begin", "_commit", "_abort"])
def test_an_interrupt_anywhere_in_a_transaction_leaves_no_lock_held(path, after):
    """Ctrl-C (any exception from a signal handler) between transaction()'s
    steps -- just after the writer lock was taken, or on the way to the
    commit or the abort -- skipped both: the lock stayed held, every other
    writer waited for ever and this thread's next write was refused."""
    s = cowstore.open(path)
    s["c"] = 0

    def interrupt(frame, event, arg):
        if event == "c_return" and getattr(arg, "__name__", "") == after:
            sys.setprofile(None)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sys.setprofile(interrupt)
        try:
            with s.transaction():
                s["c"] += 1
                if after == "_abort":
                    raise ValueError("the block fails: the transaction aborts")
        finally:
            sys.setprofile(None)
    assert _write_in_a_thread(s, "other")
    s["c"] += 10
    assert s["c"] == (11 if after == "_commit" else 10)
    s.close()


def test_closing_a_handle_another_thread_writes_through_is_refused(path):
    """close() from another thread mid-transaction left the writer's commit
    and abort nothing to end: LMDB's writer lock stayed held (this process
    and others waited for ever).  It is refused now; closing after works."""
    s = cowstore.open(path)
    inside, release = threading.Event(), threading.Event()

    def writer():
        with s.transaction():
            s["k"] = 1
            inside.set()
            release.wait(PATIENCE)

    t = threading.Thread(target=writer)
    t.start()
    assert inside.wait(PATIENCE)
    with pytest.raises(cowstore.StoreError, match="another thread is inside a transaction"):
        s.close()
    release.set()
    t.join(PATIENCE)
    s.close()
    with cowstore.open(path) as again:
        assert again["k"] == 1 and _write_in_a_thread(again, "after")
