"""Parcels: a value's nodes as one self-contained, read-only buffer.

``parcel(value)`` writes every node the value reaches (from the heap or
from any store) into one ``bytes`` in the store's node format, with
references relative to the parcel; ``open_parcel(buffer)`` reads it back
lazily and zero-copy from any buffer (``bytes``, ``mmap``, shared memory,
Ray's object store), holding the buffer while a value read from it lives.

Pickling: with protocol 5 every cowstore container reduces to its parcel as
one read-only ``pickle.PickleBuffer``, which a ``buffer_callback`` (Dask,
Ray) sends out of band and the loader reads in place; without a callback
pickle copies it in-band.  Protocols below 5 keep the older forms:
unchanged store-backed values as a reference to their file, heap values as
their plain contents.
"""
from pickle import PickleBuffer

from . import _cowstore, _subclass

#: The first pickle protocol that carries out-of-band buffers.
PICKLE_BUFFERS_PROTOCOL = 5


def parcel(value):
    """``value``'s nodes as one read-only ``bytes`` (a *parcel*).

    Size: about what the value takes in a store (``Store.du``), all its
    nodes, shared ones once.  Made in one pass; raises
    ``CorruptStoreError`` if a store-backed value fails validation."""
    return _cowstore._parcel(value)


def open_parcel(buffer):
    """The value held in a parcel, read lazily in place from ``buffer``.

    ``buffer`` is any object with the buffer protocol (kept referenced while
    a value read from it lives, and must not be written meanwhile); one not
    8-byte aligned is copied once.  A buffer that is not a parcel, or a
    damaged one, raises ``CorruptStoreError`` (on opening, or on the read
    that meets the damage), never crashes."""
    return _cowstore._open_parcel(buffer)


def _from_parcel(cls, buffer):
    """Unpickles a container: the parcel's value, as cls (a user's subclass
    rebuilt without its __init__, its attributes set after as the state)."""
    value = _cowstore._open_parcel(buffer)
    return value if type(value) is cls else _subclass.rebuild(cls, value)


def reduce_ex(obj, protocol, reduce):
    """``__reduce_ex__`` of a container: its parcel out of band from
    protocol 5 on, else ``reduce()`` (the container's ``__reduce__``)."""
    if protocol >= PICKLE_BUFFERS_PROTOCOL:
        return (_from_parcel, (type(obj), PickleBuffer(_cowstore._parcel(obj))),
                _subclass.state(obj))
    return reduce()


def register_forking_pickler(classes):
    """multiprocessing's pickler (one host, any protocol) keeps the older
    forms: store-backed values by reference to their file, which every
    process on the host maps, instead of a parcel copied in-band."""
    from multiprocessing.reduction import ForkingPickler
    for cls in classes:
        ForkingPickler.register(cls, cls.__reduce__)
