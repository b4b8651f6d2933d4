"""Importing JSON into a store in batches, in flat memory.

The items of the input's top level (see _jsonin) are added to a container
that is committed every BATCH_BYTES of input under a temporary root name.
A commit writes only the new nodes and the container then takes the stored
root, so its heap holds one batch at a time whatever the input's size.  For a
list the store runs in bulk mode meanwhile: appends replace only the old
tail's path, so there is no garbage worth compacting (a dict's inserts land
all over its index, so an object is imported with compaction on).  At the end one transaction moves
the temporary root to its name: the import is all or nothing.  When it
replaces a root, that commit sweeps the old dataset away (nothing else
would show it as garbage); an import to a new name sweeps nothing, so it
does not read a page of every segment at the end.  A malformed
input, an interrupt or a crash leaves the named root as it was; the
temporary root of an importer that died is removed by the next import or by
``cowstore compact``.
"""
import contextlib
import hashlib
import os
import socket

from ._cowstore import CowstoreError
from ._dict import CowDict
from ._list import CowList
from ._store import RESERVED_PREFIX

# Input bytes parsed between two commits: bounds the heap an import holds.
BATCH_BYTES = 4 << 20
_TEMP_PREFIX = RESERVED_PREFIX + "import:"
# Host name characters kept in a temporary root's name.
_HOST_CHARS = 64


class ImportTargetError(CowstoreError, ValueError):
    """The root to import into exists and replacing it was not asked for."""


def _host():
    return socket.gethostname()[:_HOST_CHARS].replace(":", "_")


def _temp_name(name):
    """Reserved, unique to this importer, and short whatever `name` is (root
    names are at most 511 bytes)."""
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{_TEMP_PREFIX}{_host()}:{os.getpid()}:{digest}"


def _dead_importer(temp_name):
    """Whether the importer that made temp_name is gone (this host only)."""
    try:
        host, pid, _ = temp_name[len(_TEMP_PREFIX):].split(":", 2)
        pid = int(pid)
    except ValueError:
        return False
    if host != _host() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False                # alive, someone else's
    return False


def remove_abandoned_imports(store):
    """Deletes temporary roots left by importers that died; returns how many."""
    gone = [n for n in store.reserved_names() if n.startswith(_TEMP_PREFIX)
            and _dead_importer(n)]
    if gone:
        with store.transaction():
            for name in gone:
                del store[name]
    return len(gone)


def _new_container(kind):
    return CowDict() if kind == "object" else CowList()


def import_json(store, name, reader, replace=False, progress=None, batch_bytes=BATCH_BYTES):
    """Reads every item of `reader` (a _jsonin.JsonReader) into root `name`.

    Returns the number of top-level items.  `progress(bytes_read)` is called
    after each batch.
    """
    remove_abandoned_imports(store)     # first: even an import refused below cleans up
    if name in store and not replace:
        raise ImportTargetError(f"root {name!r} exists (use --replace to overwrite it)")
    temp = _temp_name(name)
    if reader.kind == "scalar":
        items = list(reader)
        store[name] = items[0]
        return 1
    target = _new_container(reader.kind)
    add = (lambda pair: target.__setitem__(*pair)) if reader.kind == "object" else target.append
    count, committed_at = 0, 0
    try:
        # A dict's index takes inserts all over, so batches do leave garbage:
        # only lists skip compaction.
        with store.bulk_load() if reader.kind != "object" else contextlib.nullcontext():
            for item in reader:
                add(item)
                count += 1
                if reader.bytes_read - committed_at >= batch_bytes:
                    store[temp] = target
                    committed_at = reader.bytes_read
                    if progress:
                        progress(committed_at)
            store[temp] = target
        _move_root(store, temp, name, replace)
    except BaseException:
        _discard(store, temp)
        raise
    if progress:
        progress(reader.bytes_read)
    return count


def _move_root(store, temp, name, replace):
    with store.transaction():
        if name in store:
            if not replace:
                raise ImportTargetError(f"root {name!r} was created during the import "
                                        "(use --replace to overwrite it)")
            store._c()._sweep_at_commit()   # the old dataset: garbage no estimate shows
        store[name] = store[temp]
        del store[temp]


def _discard(store, temp):
    try:
        if temp in store:
            del store[temp]
    except CowstoreError:
        pass                        # the next import or compact removes it
