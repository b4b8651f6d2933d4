"""CowDict and FrozenDict: the Python half of the dict API.

The C base (``_cowstore.DictBase``) implements the hot paths; this module adds
construction, views, ``update``, ``|``, comparisons, ``repr`` and pickling.
"""
from collections.abc import ItemsView, KeysView, Mapping, MutableMapping, ValuesView
from types import GenericAlias, MappingProxyType

from . import _cowstore, _subclass
from ._parcel import by_value, reduce_ex
from ._ref import store_reference

_KEYS, _VALUES, _ITEMS = 0, 1, 2
_ABSENT = object()


class _ViewMapping:
    """``view.mapping``: a read-only proxy of the container, as dict views give."""
    __slots__ = ()

    @property
    def mapping(self):
        return MappingProxyType(self._mapping)


class CowKeysView(_ViewMapping, KeysView):
    """Live, set-like view of a CowDict's keys (like ``dict_keys``)."""
    __slots__ = ()

    def __reversed__(self):
        return self._mapping._iter(_KEYS, True)

    def __repr__(self):
        return f"{type(self).__name__}({list(self)!r})"


class CowValuesView(_ViewMapping, ValuesView):
    """Live view of a CowDict's values (like ``dict_values``)."""
    __slots__ = ()

    def __reversed__(self):
        return self._mapping._iter(_VALUES, True)

    def __contains__(self, value):
        # Over the values themselves: ValuesView walks the keys and looks
        # each up again, so a key deleted meanwhile (by another thread, or
        # by a value's __eq__) raised KeyError.
        return any(v is value or v == value for v in self._mapping._iter(_VALUES, False))

    def __repr__(self):
        return f"{type(self).__name__}({list(self)!r})"


class CowItemsView(_ViewMapping, ItemsView):
    """Live, set-like view of a CowDict's items (like ``dict_items``)."""
    __slots__ = ()

    def __reversed__(self):
        return self._mapping._iter(_ITEMS, True)

    def __repr__(self):
        return f"{type(self).__name__}({list(self)!r})"

    def __contains__(self, item):
        # As dict_items: anything but a 2-tuple is simply absent (ItemsView
        # would unpack it), and a subclass's __missing__ is not asked.
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        mapping = self._mapping
        if not isinstance(mapping, _cowstore.DictBase):
            return ItemsView.__contains__(self, item)
        value = _cowstore.DictBase.get(mapping, item[0], _ABSENT)
        return value is not _ABSENT and (value is item[1] or value == item[1])


# DictBase.keys(), .values() and .items() make these, and _register gives
# each class a C __iter__ (csrc/python/dict.c): the hot loop of a record's
# items() runs no Python frame.
for _kind, _cls in (("keys", CowKeysView), ("values", CowValuesView), ("items", CowItemsView)):
    _cowstore._register(_kind, _cls)
del _kind, _cls


def _as_plain_dict(args, kwargs, name):
    if len(args) > 1:
        raise TypeError(f"{name} expected at most 1 argument, got {len(args)}")
    src = args[0] if args else {}
    if isinstance(src, (dict, _cowstore.DictBase)) and not kwargs:
        return src
    plain = dict(src)
    plain.update(kwargs)
    return plain


class _DictReads(_cowstore.DictBase):
    """Read-side methods shared by CowDict and FrozenDict."""
    __slots__ = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _subclass.adopt(cls)

    def __init__(self, /, *args, **kwargs):
        if self._fresh():
            self._init(_as_plain_dict(args, kwargs, type(self).__name__))
        elif len(args) > 1:
            raise TypeError(f"{type(self).__name__} expected at most 1 argument, got {len(args)}")
        else:
            self._refill(args, kwargs)

    @classmethod
    def fromkeys(cls, iterable, value=None, /):
        # As dict.fromkeys: cls() then each key set, so a subclass's own
        # __new__ and __init__ are called as they are for dict subclasses.
        new = cls()
        if isinstance(new, FrozenDict):
            new._init(dict.fromkeys(iterable, value))
        elif type(new) is CowDict:
            new._merge(dict.fromkeys(iterable, value))
        else:
            for key in iterable:
                new[key] = value
        return new

    def __reversed__(self):
        return self._iter(_KEYS, True)

    def __eq__(self, other):
        if isinstance(other, _cowstore.DictBase):
            return self._equal(other)
        if isinstance(other, dict):
            if len(self) != len(other):
                return False
            missing = object()
            for key, value in other.items():
                mine = self.get(key, missing)
                if mine is missing or not (mine == value):
                    return False
            return True
        return NotImplemented

    def __or__(self, other):
        if not isinstance(other, (dict, _cowstore.DictBase)):
            return NotImplemented
        merged = CowDict(self)
        merged._merge(other)
        return _subclass.own_type(self)(merged)

    def __ror__(self, other):
        # dict | ours: a mutable CowDict, as dict | dict is a dict (a
        # FrozenDict on the right does not make the union immutable)
        if not isinstance(other, (dict, _cowstore.DictBase)):
            return NotImplemented
        merged = CowDict(other)
        merged._merge(self)
        return merged

    def __repr__(self):
        if not len(self):
            return f"{type(self).__name__}()"
        body = ", ".join(f"{k!r}: {v!r}" for k, v in self._iter(_ITEMS))
        return f"{type(self).__name__}({{{body}}})"

    def __reduce__(self):
        # Unchanged store-backed values pickle as a reference to their pages.
        return store_reference(self) or by_value(self)

    def __reduce_ex__(self, protocol):
        # Protocol 5: the parcel, out of band when pickle has a buffer_callback.
        return reduce_ex(self, protocol, self.__reduce__)

    __class_getitem__ = classmethod(GenericAlias)


def _update_pair(pair, i):
    """Element i of update's iterable as (key, value), refused with dict's
    own errors (a TypeError for a non-sequence, a ValueError for a length
    other than 2)."""
    try:
        pair = tuple(pair)
    except TypeError:
        raise TypeError(f"cannot convert dictionary update sequence element #{i} "
                        "to a sequence") from None
    if len(pair) != 2:
        raise ValueError(f"dictionary update sequence element #{i} has length {len(pair)}; "
                         "2 is required")
    return pair


class CowDict(_DictReads):
    """A dict with O(1) copy: copies share structure until one is mutated.

    Behaves like ``dict`` (insertion order, views, ``|``, comparisons).
    Nested dicts/lists/sets are stored by value and read back as live views:
    ``d["a"]["b"] = 1`` changes ``d``.  See docs/semantics.md.
    """
    __slots__ = ()
    __hash__ = None

    def _refill(self, args, kwargs):
        CowDict.update(self, *args, **kwargs)      # dict.__init__ on a dict: an update

    def update(self, other=(), /, **kwargs):
        if kwargs:              # converted first: a bad keyword value changes nothing
            kwargs = CowDict(kwargs)
        if isinstance(other, (dict, _cowstore.DictBase)):
            self._merge(other)
        elif hasattr(other, "keys"):
            for key in other.keys():
                self[key] = other[key]
        else:
            for i, pair in enumerate(other):
                key, value = _update_pair(pair, i)
                self[key] = value
        if kwargs:
            self._merge(kwargs)

    def __ior__(self, other):
        self.update(other)
        return self


class FrozenDict(_DictReads):
    """An immutable CowDict; hashable when its contents are.

    Values read from it are frozen too (FrozenDict, FrozenList, FrozenSet).
    Mutating methods raise ``cowstore.FrozenError``.
    """
    __slots__ = ()

    def __hash__(self):
        return self._hash()

    def _refill(self, args, kwargs):
        pass                # as frozenset.__init__: the contents were fixed at creation

    def update(self, *args, **kwargs):
        raise _cowstore.FrozenError("'FrozenDict' object is immutable")

    def __ior__(self, other):
        raise _cowstore.FrozenError("'FrozenDict' object is immutable")


MutableMapping.register(CowDict)
Mapping.register(FrozenDict)
