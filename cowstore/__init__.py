"""cowstore: persistent copy-on-write containers for Python.

``CowDict``, ``CowList`` and ``CowSet`` behave like dict, list and set, but
``copy()``, ``copy.copy`` and ``copy.deepcopy`` are O(1): copies share
structure and a mutation copies only the nodes on its path.  ``freeze``
converts plain nested data in one pass; ``thaw`` converts back; ``diff``
lists what changed between two versions, skipping shared parts.

``open(path)`` gives a ``Store``: named roots in an LMDB file, read lazily
and zero-copy from the memory map by any number of processes; ``share(obj)``
puts obj in an anonymous store for worker processes.  ``parcel(value)``
gives a value's nodes as one buffer that ``open_parcel`` reads in place on
any host (pickle protocol 5 sends it out of band: Dask, Ray).
"""
from . import _cowstore
from ._cowstore import (
    CorruptStoreError,
    CowMemoryError,
    CowOverflowError,
    CowstoreError,
    ConflictError,
    CowValueError,
    CycleError,
    FrozenError,
    ReadonlyStoreError,
    StoreError,
    UnsupportedTypeError,
)
from ._diff import MISSING, Change, diff
from ._dict import CowDict, CowItemsView, CowKeysView, CowValuesView, FrozenDict
from ._list import CowList, FrozenList
from . import _parcel
from ._parcel import open_parcel, parcel
from ._set import CowSet, FrozenSet
from ._store import Store, open, share

freeze = _cowstore.freeze
thaw = _cowstore.thaw

for _kind, _cls in (("dict", CowDict), ("frozendict", FrozenDict), ("list", CowList),
                    ("frozenlist", FrozenList), ("set", CowSet), ("frozenset", FrozenSet)):
    _cowstore._register(_kind, _cls)
del _kind, _cls
_parcel.register_forking_pickler((CowDict, FrozenDict, CowList, FrozenList, CowSet, FrozenSet))

__version__ = "0.6.0"

# The extension-leaf codec (datetime, Decimal, UUID, enums, dataclasses...)
# imports a dozen standard modules, half of `import cowstore`'s time and
# GC-tracked objects: it is imported when first needed, by the binding at
# the first such value, or here at the first use of its public functions.
_EXT_API = ("register", "unregister", "set_fallback")


def __getattr__(name):
    if name in _EXT_API:
        from . import _ext
        return getattr(_ext, name)
    raise AttributeError(f"module 'cowstore' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXT_API))

__all__ = [
    "CowDict", "FrozenDict", "CowList", "FrozenList", "CowSet", "FrozenSet",
    "CowKeysView", "CowValuesView", "CowItemsView",
    "freeze", "thaw", "diff", "Change", "MISSING",
    "register", "unregister", "set_fallback",
    "CowstoreError", "UnsupportedTypeError", "CycleError", "FrozenError",
    "CowMemoryError", "CowValueError", "CowOverflowError", "CorruptStoreError",
    "Store", "open", "share", "parcel", "open_parcel", "StoreError", "ReadonlyStoreError", "ConflictError",
]
