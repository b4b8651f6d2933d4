"""Dask integration: ``dask.sizeof`` for cowstore containers.

Registered through the ``dask.sizeof`` entry point (setup.cfg), so Dask
finds it without importing cowstore first.  A container's size is what its
nodes take written out (its parcel, shared nodes once): the bytes a worker
holds or receives for it, not the few dozen bytes of the Python wrapper.
"""
from . import _cowstore
from ._dict import CowDict, FrozenDict
from ._list import CowList, FrozenList
from ._set import CowSet, FrozenSet

#: What Dask would count for the Python wrapper alone.
_WRAPPER_BYTES = 64


def sizeof_container(value):
    """Bytes of value's nodes (the CLI's ``cowstore du`` counts the same)."""
    nbytes, _nodes = _cowstore._measure([value])
    return int(nbytes) + _WRAPPER_BYTES


def register(sizeof):
    """The ``dask.sizeof`` entry point: registers every container class."""
    for cls in (CowDict, FrozenDict, CowList, FrozenList, CowSet, FrozenSet):
        sizeof.register(cls)(sizeof_container)
