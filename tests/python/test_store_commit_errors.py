"""Commits whose work goes wrong after LMDB made them durable, or that need
more than the map holds: a commit either stands and says so, or fails
having written nothing.

The reader table is filled from another process through LMDB's C API
(ctypes on the system liblmdb), as many read-only openers of a busy store
would: then no new snapshot can be opened to read a commit back (a new
transaction cannot begin either, but that fails before writing anything).
"""
import ctypes.util
import os
import subprocess
import sys

import pytest

import cowstore

LMDB = ctypes.util.find_library("lmdb")

# Takes every free reader slot of the LMDB file argv[1] (each read
# transaction of an MDB_NOTLS environment holds its own), says "full", and
# holds them until stdin closes (then gives them back: a dead process's
# slots stay taken until some opener checks for stale readers).
HOLD_READERS = r"""
import ctypes, sys
MDB_NOSUBDIR, MDB_RDONLY, MDB_NOTLS = 0x4000, 0x20000, 0x200000
MDB_READERS_FULL = -30790
lib = ctypes.CDLL(sys.argv[2])
env = ctypes.c_void_p()
assert lib.mdb_env_create(ctypes.byref(env)) == 0
assert lib.mdb_env_open(env, sys.argv[1].encode(), MDB_NOSUBDIR | MDB_RDONLY | MDB_NOTLS, 0o644) == 0
txns = []
while True:
    t = ctypes.c_void_p()
    rc = lib.mdb_txn_begin(env, None, MDB_RDONLY, ctypes.byref(t))
    if rc == MDB_READERS_FULL:
        break
    assert rc == 0, rc
    txns.append(t)
print("full", flush=True)
sys.stdin.read()
for t in txns:
    lib.mdb_txn_abort(t)
lib.mdb_env_close(env)
"""


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "store.cow")


@pytest.mark.skipif(LMDB is None, reason="needs the system liblmdb")
def test_commit_stands_when_no_reader_slot_is_left_to_read_it_back(path):
    """Reading the commit back (for the put container to adopt its stored
    twin) needs a new snapshot; without a slot for one the assignment raised
    MDB_READERS_FULL although the value was committed -- and a caller retrying
    a read-modify-write would apply it twice."""
    s = cowstore.open(path, durable=False)
    value = cowstore.CowList([1, 2, 3])
    with subprocess.Popen([sys.executable, "-c", HOLD_READERS, path, LMDB],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout.readline() == "full\n"
        s["x"] = value
    assert list(s["x"]) == [1, 2, 3]
    value.append(4)                     # not adopted: still the caller's own, whole
    s["x"] = value
    assert list(s["x"]) == [1, 2, 3, 4]
    s.close()
    with cowstore.open(path, readonly=True) as r:
        assert list(r["x"]) == [1, 2, 3, 4]


def test_a_commit_far_bigger_than_the_map_grows_it_as_far_as_it_needs(path):
    """The map doubled at most 8 times per commit: a ~35 MiB commit on a
    32 KiB map (32 MiB after the doublings) failed with MDB_MAP_FULL, and
    the identical retry then succeeded."""
    s = cowstore.open(path, map_size=32 << 10, durable=False)
    s["a"] = [1, 2, 3]
    rows = [os.urandom(100) for _ in range(300_000)]
    s["big"] = rows
    assert list(s["big"]) == rows and list(s["a"]) == [1, 2, 3]
    assert s.stats()["map_bytes"] > 32 << 20
    s.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (root only: skipped elsewhere)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs",
                                            str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("needs to mount a small tmpfs (root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_full_disk_is_named_as_such(small_disk):
    """LMDB turns the short write of a full disk into EIO: the commit said
    'Input/output error'."""
    s = cowstore.open(str(small_disk / "s.cow"))
    with pytest.raises(cowstore.StoreError, match="No space left on device"):
        for n in range(100):
            s[f"b{n}"] = [os.urandom(50) for _ in range(5000)]
    s.close()
