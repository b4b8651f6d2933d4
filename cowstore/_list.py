"""CowList and FrozenList: the Python half of the list API.

The C base (``_cowstore.ListBase``) implements indexing, slicing, append,
pop, insert, extend, remove, index, count, reverse and copy; this module adds
construction, comparisons, ``+``, ``*``, ``sort``, ``repr`` and pickling.
"""
from collections.abc import MutableSequence, Sequence
from types import GenericAlias

from . import _cowstore
from ._parcel import reduce_ex
from ._ref import store_reference


def _as_sequence(iterable):
    if isinstance(iterable, (list, tuple, _cowstore.ListBase)):
        return iterable
    items = CowList()       # extend, unlike list(), takes no __length_hint__ at its word
    _cowstore.ListBase.extend(items, iterable)
    return items


def _compare(a, b, op):
    """Lexicographic comparison as list does it: first unequal pair decides."""
    for x, y in zip(a, b):
        if not (x == y):
            return op(x, y)
    return op(len(a), len(b))


class _ListReads(_cowstore.ListBase):
    """Read-side methods shared by CowList and FrozenList."""
    __slots__ = ()

    def __init__(self, iterable=(), /):
        if self._fresh():
            self._init(_as_sequence(iterable))
        else:
            self._refill(iterable)

    def _comparable(self, other):
        return isinstance(other, (list, _cowstore.ListBase))

    def __eq__(self, other):
        if isinstance(other, _cowstore.ListBase):
            return self._equal(other)
        if isinstance(other, list):
            return len(self) == len(other) and _compare(self, other, lambda x, y: x == y)
        return NotImplemented

    def __lt__(self, other):
        return _compare(self, other, lambda x, y: x < y) if self._comparable(other) else NotImplemented

    def __le__(self, other):
        return _compare(self, other, lambda x, y: x <= y) if self._comparable(other) else NotImplemented

    def __gt__(self, other):
        return _compare(self, other, lambda x, y: x > y) if self._comparable(other) else NotImplemented

    def __ge__(self, other):
        return _compare(self, other, lambda x, y: x >= y) if self._comparable(other) else NotImplemented

    def __add__(self, other):
        if not self._comparable(other):
            return NotImplemented
        joined = CowList(self)
        joined.extend(other)
        return type(self)(joined) if type(self) is not CowList else joined

    def __radd__(self, other):
        if not self._comparable(other):
            return NotImplemented
        joined = CowList(other)
        joined.extend(self)
        return type(self)(joined) if type(self) is not CowList else joined

    def __mul__(self, count):
        try:
            count = count.__index__()
        except AttributeError:
            return NotImplemented
        repeated = CowList()
        for _ in range(max(count, 0)):
            repeated.extend(self)
        return type(self)(repeated) if type(self) is not CowList else repeated

    __rmul__ = __mul__

    def __repr__(self):
        return f"{type(self).__name__}([{', '.join(map(repr, self))}])"

    def __reduce__(self):
        # Unchanged store-backed values pickle as a reference to their pages.
        return store_reference(self) or (type(self), (self._thaw(),))

    def __reduce_ex__(self, protocol):
        # Protocol 5: the parcel, out of band when pickle has a buffer_callback.
        return reduce_ex(self, protocol, self.__reduce__)

    __class_getitem__ = classmethod(GenericAlias)


class CowList(_ListReads):
    """A list with O(1) copy: copies share structure until one is mutated.

    Index, append and pop at the end are O(log32 n); insert/delete in the
    middle and slice assignment are O(n) (like list).  Nested containers are
    stored by value and read back as live views.  See docs/semantics.md.
    """
    __slots__ = ()
    __hash__ = None

    def _refill(self, iterable):
        # list.__init__ on a list: clear, then extend (reading the now empty list)
        _cowstore.ListBase.clear(self)
        _cowstore.ListBase.extend(self, iterable)

    def sort(self, *, key=None, reverse=False):
        # As list.sort: the list looks empty while the key function and the
        # comparisons run, gets the sorted items back however the sort ends,
        # and a change made meanwhile is lost and raises ValueError.
        items = list(self)
        _cowstore.ListBase.clear(self)
        before = self._writes()
        try:
            items.sort(key=key, reverse=reverse)
        finally:
            changed = self._writes() != before or len(self)
            self[:] = items
        if changed:
            raise ValueError("list modified during sort")

    def __iadd__(self, other):
        self.extend(other)
        return self

    def __imul__(self, count):
        count = count.__index__()
        if count <= 0:
            self.clear()
        else:
            snapshot = self.copy()
            for _ in range(count - 1):
                self.extend(snapshot)
        return self


class FrozenList(_ListReads):
    """An immutable CowList; hashable when its contents are."""
    __slots__ = ()

    def _refill(self, iterable):
        pass                # as tuple.__init__: the contents were fixed at creation

    def __hash__(self):
        return self._hash()


MutableSequence.register(CowList)
Sequence.register(FrozenList)
