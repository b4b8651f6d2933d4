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
#: Containers of at most this many entries, nested ones included (a packed
#: record's fields too), pickle by value at protocol 5 too.  Each parcel
#: opened holds one of a process's 127 reference slots while a value read
#: from it lives, so a pickle of many small containers (a list of 200
#: records) could not be loaded; and a small one gains nothing from being
#: read in place.
SMALL_BY_VALUE = 256


def parcel(value):
    """``value``'s nodes as one read-only ``bytes`` (a *parcel*).

    Size: about what the value takes in a store (``cowstore du``), all its
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


def by_value(obj):
    """A container's reduce by value: its contents, nested frozen containers
    kept as themselves (each pickled in its own turn), so every type it held
    comes back; a user's subclass is rebuilt without its ``__init__`` and
    gets its state as pickle gives any object's."""
    cls = type(obj)
    if _subclass.is_own(cls):
        return (cls, (obj._contents(),))
    return (_subclass.rebuild, (cls, obj._contents()), _subclass.state(obj))


def reduce_ex(obj, protocol, reduce):
    """``__reduce_ex__`` of a container: from protocol 5 on, its parcel out
    of band, or its contents when it is small (SMALL_BY_VALUE); else
    ``reduce()`` (the container's ``__reduce__``)."""
    if protocol < PICKLE_BUFFERS_PROTOCOL:
        return reduce()
    if obj._small(SMALL_BY_VALUE, True):
        return by_value(obj)
    return (_from_parcel, (type(obj), PickleBuffer(_cowstore._parcel(obj))),
            _subclass.state(obj))


def register_forking_pickler(classes):
    """multiprocessing's pickler (one host, any protocol) keeps the older
    forms: store-backed values by reference to their file, which every
    process on the host maps, instead of a parcel copied in-band."""
    from multiprocessing.reduction import ForkingPickler
    for cls in classes:
        ForkingPickler.register(cls, cls.__reduce__)
