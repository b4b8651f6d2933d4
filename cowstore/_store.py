"""Stores: named roots in an LMDB file, read lazily from the memory map.

``open(path)`` returns a :class:`Store`, a mapping from root names to values.
Assigning commits (only nodes the store does not hold yet are written);
reading returns containers backed by the store's pages, decoded only as they
are read.  The C half (``_cowstore._Store``) does the work; this module adds
the Python API: one LMDB environment per file per process (LMDB forbids
opening a file twice in a process), transactions as a context manager,
anonymous stores for :func:`share`, reopening after ``fork``, and pickling
store-backed values as references.
"""
import collections.abc
import contextlib
import fcntl
import itertools
import os
import sys
import threading
import time
import weakref

from . import _cowstore
from ._cowstore import ConflictError, StoreError

# Flags of _cowstore._Store (cowstore/store.h).
_READONLY, _NOSYNC, _DIR = 0x1, 0x2, 0x4
# Anonymous stores are files named like this, so any process that opens one
# (a spawned worker unpickling a reference) joins in deciding who removes it.
_ANON_PREFIX = "cowstore-anon-"
# Plain assignments retry when the map had to grow while another process
# committed (a ConflictError only matters to transactions that read).
_PUT_RETRIES = 8
# Root names starting with this are cowstore's own (an import in progress):
# names() leaves them out.
RESERVED_PREFIX = "\x00"
# An anonymous store file untouched this long and locked by nobody is swept.
_SWEEP_AGE = 60
# Names an anonymous store tries before giving up.  A name is taken only if
# someone planted a file there (each name holds 32 random bits), so more than
# one failure means someone is trying.
_ANON_ATTEMPTS = 16

_lock = threading.Lock()
_anchors = weakref.WeakValueDictionary()    # realpath -> _Anchor
_anon_counter = itertools.count()


def _is_name(name):
    """Whether name can name a root: a str of valid UTF-8 (no lone
    surrogates); any other key is simply absent, as a dict's unknown key."""
    if not isinstance(name, str):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Anchor:
    """What a store-backed value remembers of its store: the path, and for
    an anonymous store the shared flock that decides who removes the file.

    One per file per process; Store handles and values read from them hold
    it, so an anonymous file is removed only after the last handle and the
    last value referring to it are gone -- in every process: each holds a
    shared lock, and whoever can upgrade it to exclusive is the last.
    """

    def __init__(self, path):
        self.path = path
        self.anonymous = os.path.basename(path).startswith(_ANON_PREFIX)
        # Each thread's transaction on this file, whichever handle it uses
        # (the C side shares one environment and one writer gate per file).
        self.txns = threading.local()
        # Threads whose transaction was left from another thread: it could
        # not end there (LMDB's writer lock is its thread's), so the owner's
        # next write aborts it and raises.
        self.orphaned = set()
        self._fd = [None]           # shared with the finalizer, which cannot hold self
        if self.anonymous:
            self._lock()
            weakref.finalize(self, _remove_if_last, path, self._fd)

    def _lock(self):
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_SH)
        old, self._fd[0] = self._fd[0], fd
        if old is not None:
            os.close(old)

    def before_fork(self):
        """A lock for the child, taken before it exists: there is no moment
        when the parent alone holds the file and could remove it."""
        if self.anonymous:
            self._child_fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            fcntl.flock(self._child_fd, fcntl.LOCK_SH)

    def after_fork_in_parent(self):
        fd, self._child_fd = getattr(self, "_child_fd", None), None
        if fd is not None:
            os.close(fd)

    def after_fork_in_child(self):
        fd, self._child_fd = getattr(self, "_child_fd", None), None
        if fd is None:
            return
        old, self._fd[0] = self._fd[0], fd
        if old is not None:
            os.close(old)           # the parent's lock lives on in the parent
        # multiprocessing workers leave by os._exit, which skips weakref
        # finalizers; their exit runs multiprocessing's Finalize callbacks,
        # registered once the worker has reset its registries.
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.register_after_fork(self, _Anchor._finalize_at_worker_exit)

    def _finalize_at_worker_exit(self):
        mp_util = sys.modules["multiprocessing.util"]
        mp_util.Finalize(self, _remove_if_last, args=(self.path, self._fd), exitpriority=0)


def _remove_if_last(path, fdbox):
    fd, fdbox[0] = fdbox[0], None
    if fd is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass                        # another process still uses it
    else:
        _remove_files(path)
    finally:
        os.close(fd)


def _canonical_path(path):
    """The one name of the store at path.  LMDB names its lock file after
    the name it is given (name + "-lock", or DIR/lock.mdb), so two names of
    one store -- a symbolic link and its target, DIR and DIR/data.mdb --
    would lock apart, and writers through both would corrupt the file:
    links are resolved, and a directory store's data.mdb is named by its
    directory (unless it is a store file of its own, with data.mdb-lock)."""
    real = os.path.realpath(path)
    folder, name = os.path.split(real)
    if (name == "data.mdb" and os.path.isfile(real)
            and (os.path.exists(os.path.join(folder, "lock.mdb"))
                 or not os.path.exists(real + "-lock"))):
        return folder
    return real


def _anchor_for(path):
    key = os.path.realpath(path)
    with _lock:
        anchor = _anchors.get(key)
        if anchor is None:
            anchor = _anchors[key] = _Anchor(key)
        return anchor


def _before_fork():
    for anchor in list(_anchors.values()):
        anchor.before_fork()


def _after_fork_in_parent():
    for anchor in list(_anchors.values()):
        anchor.after_fork_in_parent()


def _after_fork_in_child():
    for anchor in list(_anchors.values()):
        anchor.after_fork_in_child()
    try:
        _cowstore._after_fork()
    except StoreError:
        pass                        # reported again by the next use of that store


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


def _remove_files(path):
    """Removes a store file and its LMDB lock file."""
    for p in (path, path + "-lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


def _anon_dir():
    if os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    import tempfile                     # shutil, bz2, lzma, random: not at import
    return tempfile.gettempdir()


def _anon_name():
    return f"{_ANON_PREFIX}{os.getpid()}-{next(_anon_counter)}-{os.urandom(4).hex()}"


def _anonymous_path():
    """Creates a new anonymous store's data and lock files and returns the
    data file's path.  Both are private to this user (mode 0600, whatever
    the umask) and new: created exclusively, never through a symbolic link,
    so a file or link planted at the name in this directory every user can
    write is never opened (the data neither readable by its planter nor
    written where a link points); another name is tried.  LMDB takes an
    empty data file and an empty lock file as a new environment."""
    base = _anon_dir()
    _sweep_abandoned(base)
    for _ in range(_ANON_ATTEMPTS):
        path = os.path.join(base, _anon_name())
        if _create_private(path):
            if _create_private(path + "-lock"):
                return path
            os.unlink(path)
    raise StoreError(f"cannot create an anonymous store in {base}: "
                     f"{_ANON_ATTEMPTS} new names were all taken")


def _create_private(path):
    """Creates path, empty, mode 0600; False if anything is there already."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, 0o600)        # the umask may have taken bits away
    finally:
        os.close(fd)
    return True


def _sweep_abandoned(base):
    """Removes anonymous stores nobody holds any more (their last users died
    without cleaning up: SIGKILL, os._exit).  Only files older than
    _SWEEP_AGE seconds: a new one may not be locked by its creator yet."""
    try:
        names = [n for n in os.listdir(base)
                 if n.startswith(_ANON_PREFIX) and not n.endswith("-lock")]
    except OSError:
        return
    now = time.time()
    for name in names:
        path = os.path.join(base, name)
        try:
            if now - os.stat(path).st_mtime < _SWEEP_AGE:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        _remove_if_last(path, [fd])


class Store(collections.abc.MutableMapping):
    """A store of named roots (see ``cowstore.open``).

    A ``MutableMapping`` of str names: ``store[name] = obj`` commits obj,
    ``store[name]`` reads a consistent snapshot backed by the store's pages,
    ``del store[name]`` removes a root and frees what only it reached.  The
    methods that change several roots (``update``, ``pop``, ``popitem``,
    ``setdefault``, ``clear``) run in one transaction.  Use it as a context
    manager to close it.
    """

    def __init__(self, path=None, *, readonly=False, map_size=None, durable=True):
        if path is None:
            if readonly:
                raise ValueError("an anonymous store cannot be readonly")
            path = created = _anonymous_path()
        else:
            created = None
        path = os.fsdecode(os.fspath(path))     # bytes paths too, as open() takes them
        if not created:
            path = _canonical_path(path)
        flags = (_READONLY if readonly else 0) | (0 if durable else _NOSYNC)
        if os.path.isdir(path):
            flags |= _DIR
        try:
            self._store = _cowstore._Store(path, flags, map_size or 0)
        except BaseException:
            if created:
                _remove_files(created)
            raise
        self._anchor = _anchor_for(path)
        self._path = self._anchor.path
        self._anonymous = self._anchor.anonymous
        self._readonly = readonly
        self._txns = self._anchor.txns
        self._orphaned = self._anchor.orphaned

    # -- properties ----------------------------------------------------------
    @property
    def path(self):
        """The store's file (or directory)."""
        return self._path

    @property
    def readonly(self):
        return self._readonly

    @property
    def anonymous(self):
        """True for stores made by ``open()`` without a path or by ``share``."""
        return self._anonymous

    @property
    def closed(self):
        return self._store is None

    def _c(self):
        if self._store is None:
            raise StoreError("store is closed")
        return self._store

    def _txn(self):
        """The calling thread's transaction on this file: its nesting depth,
        and the containers put, by name, with their root word at the put."""
        t = self._txns
        if not hasattr(t, "depth"):
            t.depth, t.puts = 0, {}
        if self._orphaned and threading.get_ident() in self._orphaned:
            self._orphaned.discard(threading.get_ident())
            t.depth, t.puts = 0, {}
            t.handle._abort()
            raise StoreError("this thread's transaction was left from another thread, where it "
                             "could not end: it is aborted now, and its writes are discarded")
        return t

    # -- the mapping ---------------------------------------------------------
    def __getitem__(self, name):
        c = self._c()
        if not isinstance(name, str):
            raise KeyError(name)        # names are str: any other key is absent
        try:
            value = c._get(name)
        except UnicodeEncodeError:      # a lone surrogate: no root has such a name
            raise KeyError(name) from None
        if hasattr(value, "_set_origin"):
            value._set_origin((self._anchor, name))
        return value

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    def __setitem__(self, name, value):
        self._check_writable()
        if isinstance(name, str) and not _is_name(name):
            raise StoreError(f"root name {name!r} is not valid UTF-8 (a lone surrogate)")
        if self._txn().depth:
            self._put(name, value)
            return
        for attempt in range(_PUT_RETRIES):
            try:
                with self.transaction():
                    self._put(name, value)
                return
            except ConflictError:
                if attempt == _PUT_RETRIES - 1:
                    raise

    def _put(self, name, value):
        self._c()._put(name, value)
        puts = self._txn().puts
        puts.pop(name, None)            # an earlier put of name is not committed
        if hasattr(value, "_adopt"):
            puts[name] = (value, value._root_word())

    def _adopt_committed(self, puts, committed):
        """After a commit, each container put (and unchanged since) takes the
        stored twin of its own put, so committing it again writes only new
        changes.  committed: {name: stored value} from the commit itself."""
        for name, (value, word) in puts.items():
            stored = committed.get(name)
            if stored is not None and value._adopt(stored, word):
                value._set_origin((self._anchor, name))

    def __delitem__(self, name):
        self._check_writable()
        if not _is_name(name):
            raise KeyError(name)
        with self.transaction():
            self._c()._delete(name)
            self._txn().puts.pop(name, None)

    def __contains__(self, name):
        c = self._c()
        if not isinstance(name, str):
            return False
        try:
            c._get(name)
        except (KeyError, UnicodeEncodeError):
            return False
        return True

    def names(self):
        """Root names, sorted by their UTF-8 bytes."""
        return [n for n in self._c()._names() if not n.startswith(RESERVED_PREFIX)]

    def reserved_names(self):
        """Roots cowstore keeps for itself (imports in progress)."""
        return [n for n in self._c()._names() if n.startswith(RESERVED_PREFIX)]

    keys = names

    def __iter__(self):
        return iter(self.names())

    def __len__(self):
        return len(self.names())

    def items(self):
        return [(n, self[n]) for n in self.names()]

    def values(self):
        return [self[n] for n in self.names()]

    # MutableMapping's methods, each in one transaction: all or nothing.
    def pop(self, name, *default):
        with self.transaction():
            return super().pop(name, *default)

    def popitem(self):
        with self.transaction():
            return super().popitem()

    def setdefault(self, name, default=None):
        with self.transaction():
            return super().setdefault(name, default)

    def update(self, other=(), /, **kwargs):
        with self.transaction():
            super().update(other, **kwargs)

    def clear(self):
        """Removes every root (not the reserved ones of an import under way)."""
        with self.transaction():
            for name in self.names():
                del self[name]

    # -- transactions ----------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self):
        """Groups reads and writes atomically.

        A transaction belongs to the thread that opens it.  Entering waits
        for the store's writer lock (held by another thread or process that
        is writing), so reads inside see the latest commit and a
        read-modify-write cannot lose an update.  Writes become visible to
        others -- other threads included -- at the end; an exception
        discards them.  Nested ``transaction()`` blocks in one thread join
        the outer one, whichever handle of the file they use.
        """
        self._check_writable()
        t = self._txn()
        if t.depth:
            t.depth += 1
            try:
                yield self
            finally:
                t.depth -= 1
            return
        c = self._c()
        owner = threading.get_ident()
        ended = False
        try:
            if c._in_txn():
                c._abort()          # one this thread lost to an interrupt: not to keep
            c._begin()
            t.depth, t.puts, t.handle = 1, {}, c
            try:
                yield self
            finally:
                self._leave_in(owner)
            puts, t.puts = t.puts, {}
            t.depth = 0
            if not c._in_txn():
                raise StoreError("a handle of this store was closed inside the transaction, "
                                 "which aborted it: its writes were not committed")
            committed = c._commit()
            ended = True
            self._adopt_committed(puts, committed)
        finally:
            # An exception -- the block's, a failed commit's, or an interrupt
            # (Ctrl-C) between any two steps above -- ends the transaction
            # here, so LMDB's writer lock is never left held.  Left from
            # another thread, it stays open (_leave_in).
            if not ended and threading.get_ident() == owner:
                t.depth = 0
                c._abort()

    def _leave_in(self, owner):
        if threading.get_ident() != owner:
            self._orphaned.add(owner)
            raise StoreError("a transaction must be left in the thread that entered it: it "
                             "stays open there, and that thread's next write aborts it")

    @contextlib.contextmanager
    def bulk_load(self):
        """Commits inside never sweep or compact, and count all they write as
        live: for appending large data in many commits, where each commit
        replaces only a path's worth of old nodes.  Without it, the growth
        looks like garbage and triggers compaction after compaction."""
        self._check_writable()
        self._c()._bulk(True)
        try:
            yield self
        finally:
            if self._store is not None:
                self._store._bulk(False)

    def _check_writable(self):
        if self._readonly:
            raise _cowstore.ReadonlyStoreError(f"{self.path} is opened readonly")

    # -- maintenance ----------------------------------------------------------
    def stats(self):
        """Sizes and counts: roots, segments, bytes live and in the file, LMDB's."""
        s = self._c()._stats()
        s["path"] = self.path
        s["file_size"] = _file_size(self.path)
        return s

    def compact(self):
        """Rewrites every root's live nodes into fresh segments, freeing the rest."""
        self._check_writable()
        self._c()._compact()

    def close(self):
        """Closes this handle.  Values already read stay readable until dropped."""
        if self._store is not None:
            self._store.close()
            self._store = None
            self._anchor = None     # values read keep it (and an anonymous file) alive

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (_reopen, (self.path, self._readonly))

    def __repr__(self):
        state = "closed" if self._store is None else ("readonly" if self._readonly else "open")
        return f"<cowstore.Store {self.path!r} {state}>"


def _file_size(path):
    if os.path.isdir(path):
        path = os.path.join(path, "data.mdb")
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _reopen(path, readonly):
    return Store(path, readonly=readonly)


def open(path=None, *, readonly=False, map_size=None, durable=True):  # noqa: A001
    """Opens (creating it unless ``readonly``) the store at ``path``.

    ``path`` is a store file, or a directory holding LMDB's ``data.mdb``;
    ``None`` makes an anonymous store in ``/dev/shm`` (or the temp dir) that
    is removed when the last process using it closes it.  ``map_size`` is
    the initial address space reserved (the map grows by itself);
    ``durable=False`` skips the fsync at each commit (a crash of the machine,
    not of the process, may lose the last commits).
    """
    return Store(path, readonly=readonly, map_size=map_size, durable=durable)


def share(obj):
    """Puts obj in a new anonymous store and returns it read back from there.

    The result pickles as a reference, so process-pool and DataLoader workers
    read the same pages instead of receiving a copy.
    """
    store = Store()
    store["shared"] = obj
    value = store["shared"]
    store.close()                  # the value keeps the store's pages alive
    return value


# -- pickling store-backed values by reference ---------------------------------

def _resolve_reference(store_path, name, path, word):
    # Writable when the file is (a worker may write to it later), unless this
    # process has it open readonly already (a value pickled and loaded in
    # the process, or a fork child, of a readonly store).
    try:
        store = Store(store_path, readonly=not os.access(store_path, os.W_OK))
    except _cowstore.ReadonlyStoreError:
        store = Store(store_path, readonly=True)
    try:
        value = store[name]
        for step in path:
            value = value[step]
        origin = value._origin() if hasattr(value, "_origin") else None
    except (KeyError, IndexError, TypeError):
        origin = None                   # the path is gone: the root changed
    finally:
        store.close()
    if origin is None or origin[2] != word:
        raise StoreError(f"root {name!r} of {store_path} changed after this value was "
                         "pickled; pickle it again (or keep the version it came from)")
    return value
