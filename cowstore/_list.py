"""CowList and FrozenList: the Python half of the list API.

The C base (``_cowstore.ListBase``) implements indexing, slicing, append,
pop, insert, extend, remove, index, count, reverse and copy; this module adds
construction, comparisons, ``+``, ``*``, ``sort``, ``repr`` and pickling.
"""
import operator
import sys
from collections.abc import MutableSequence, Sequence
from types import GenericAlias

from . import _cowstore, _subclass
from ._parcel import by_value, reduce_ex
from ._ref import store_reference


def _as_sequence(iterable):
    if isinstance(iterable, (list, tuple, _cowstore.ListBase)):
        return iterable
    items = CowList()       # extend, unlike list(), takes no __length_hint__ at its word
    _cowstore.ListBase.extend(items, iterable)
    return items


#: The most items a list may hold, as CPython's list: PY_SSIZE_T_MAX / 8.
_MAX_ITEMS = sys.maxsize // 8


def _repeated(items, count):
    """A CowList of items repeated count times, as list * count: the count
    an index-sized int (OverflowError), a result list could not allocate a
    MemoryError, found before any work; built by doubling (log count
    extends of shared nodes)."""
    count = operator.index(count)
    if not -sys.maxsize - 1 <= count <= sys.maxsize:
        raise OverflowError(f"cannot fit '{type(count).__name__}' into an index-sized integer")
    n = len(items)
    if count <= 0 or n == 0:
        return CowList()
    if n > _MAX_ITEMS // count:
        raise MemoryError
    result, chunk = CowList(), CowList(items)
    while True:
        if count & 1:
            result.extend(chunk)
        count >>= 1
        if not count:
            return result
        chunk.extend(chunk)


def _compare(a, b, op):
    """Lexicographic comparison as list does it: first unequal pair decides."""
    for x, y in zip(a, b):
        if not (x == y):
            return op(x, y)
    return op(len(a), len(b))


class _ListReads(_cowstore.ListBase):
    """Read-side methods shared by CowList and FrozenList."""
    __slots__ = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _subclass.adopt(cls)

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
        return _subclass.own_type(self)(joined)

    def __radd__(self, other):
        # list + ours: a mutable CowList, as list + list is a list (a
        # FrozenList on the right does not make the sum immutable)
        if not self._comparable(other):
            return NotImplemented
        joined = CowList(other)
        joined.extend(self)
        return joined

    def __mul__(self, count):
        if not hasattr(type(count), "__index__"):
            return NotImplemented
        return _subclass.own_type(self)(_repeated(self, count))

    __rmul__ = __mul__

    def __repr__(self):
        return f"{type(self).__name__}([{', '.join(map(repr, self))}])"

    def __reduce__(self):
        # Unchanged store-backed values pickle as a reference to their pages.
        return store_reference(self) or by_value(self)

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
        # comparisons run, then holds the sorted items, or its items as they
        # were if the sort raised; a change made meanwhile is lost (and
        # raises ValueError).  The items wait in `held`, moved there and
        # back by _swap, which allocates nothing: a MemoryError, however
        # often it strikes, never loses them.
        held = CowList()
        self._swap(held)
        try:
            before = self._writes()
            items = list(held)
            items.sort(key=key, reverse=reverse)
            result = CowList(items)
            changed = self._writes() != before or len(self)
            self._swap(result)
        except BaseException:
            self._swap(held)
            raise
        if changed:
            raise ValueError("list modified during sort")

    def __iadd__(self, other):
        self.extend(other)
        return self

    def __imul__(self, count):
        if not hasattr(type(count), "__index__"):
            raise TypeError(f"can't multiply sequence by non-int of type '{type(count).__name__}'")
        repeated = _repeated(self, count)
        if len(repeated) != len(self):
            self[:] = repeated
        return self


class FrozenList(_ListReads):
    """An immutable CowList; hashable when its contents are."""
    __slots__ = ()

    def sort(self, *, key=None, reverse=False):
        # The one mutator CowList adds to the C base: it raises as theirs do.
        raise _cowstore.FrozenError("'FrozenList' object is immutable")

    def _refill(self, iterable):
        pass                # as tuple.__init__: the contents were fixed at creation

    def __hash__(self):
        return self._hash()


MutableSequence.register(CowList)
Sequence.register(FrozenList)
