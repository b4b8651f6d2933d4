"""Anonymous stores are private: their data and lock files are created mode
0600 and exclusively, so a file or symbolic link planted at the chosen name
(in /dev/shm, which every user can write) is never opened or written
through.  Named stores follow the umask, as other databases do."""
import contextlib
import os
import stat

import pytest

import cowstore
from cowstore import _store


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("make", ["open", "share"])
def test_anonymous_files_are_0600(make):
    with umask(0o022):
        if make == "open":
            store = cowstore.open()
            store["x"] = {"secret": 1}
            path = store.path
        else:
            value = cowstore.share({"secret": 1})
            path = value._origin()[0][0].path
        assert mode(path) == 0o600 and mode(path + "-lock") == 0o600
        assert os.path.getsize(path) > 0            # LMDB took the empty file as new


@pytest.mark.parametrize("mask,want", [(0o022, 0o644), (0o077, 0o600)])
def test_named_stores_follow_the_umask(tmp_path, mask, want):
    path = str(tmp_path / "named.cow")
    with umask(mask), cowstore.open(path) as store:
        store["x"] = 1
    assert mode(path) == want and mode(path + "-lock") == want


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """Names handed out in order by a patched _anon_name (so they collide
    with what a test plants); removes whatever it planted or left."""
    base = _store._anon_dir()
    names = [f"{_store._ANON_PREFIX}test-{os.getpid()}-{i}" for i in range(3)]
    queue = list(names)
    monkeypatch.setattr(_store, "_anon_name", lambda: queue.pop(0) if queue else names[0])
    paths = [os.path.join(base, n) for n in names]
    yield paths
    for p in paths:
        for q in (p, p + "-lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(q)


def test_a_planted_symlink_or_file_is_never_used(planted, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"do not touch")
    os.symlink(victim, planted[0])                  # the first name: a link to a victim file
    dangling = tmp_path / "would-be-created"
    os.symlink(dangling, planted[1] + "-lock")      # the second: a dangling link as lock file
    with umask(0o022):
        store = cowstore.open()
    try:
        store["x"] = [1, 2, 3]
        assert store.path == planted[2]
        assert mode(store.path) == 0o600 and mode(store.path + "-lock") == 0o600
    finally:
        store.close()
    assert victim.read_bytes() == b"do not touch"
    assert os.path.islink(planted[0]) and os.readlink(planted[0]) == str(victim)
    assert not os.path.exists(dangling)             # nothing created through the link
    assert not os.path.exists(planted[1])           # our data file, given up, was removed
    assert os.path.islink(planted[1] + "-lock")


def test_a_planted_regular_file_is_never_reused(planted):
    with open(planted[0], "wb") as f:
        f.write(b"")                                # empty: LMDB would take it as new
    os.chmod(planted[0], 0o666)
    store = cowstore.open()
    try:
        assert store.path == planted[1]
        store["x"] = 1
    finally:
        store.close()
    assert os.path.getsize(planted[0]) == 0 and not os.path.exists(planted[0] + "-lock")


def test_when_every_name_is_taken_the_open_fails_cleanly(planted, tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_bytes(b"x")
    os.symlink(victim, planted[0])
    monkeypatch.setattr(_store, "_anon_name", lambda: os.path.basename(planted[0]))
    with pytest.raises(cowstore.StoreError, match="names were all taken"):
        cowstore.open()
    with pytest.raises(cowstore.StoreError):
        cowstore.share([1])
    assert victim.read_bytes() == b"x" and os.path.islink(planted[0])
