"""CowSet and FrozenSet: the set API on the same persistent map core.

The C base (``_cowstore.SetBase``) implements membership, ``add``, ``pop``,
``clear``, ``copy`` and iteration (in insertion order); this module adds the
set algebra, comparisons, ``repr`` and pickling.
"""
from collections.abc import MutableSet, Set
from types import GenericAlias

from . import _cowstore
from ._parcel import reduce_ex
from ._ref import store_reference


def _is_set(obj):
    return isinstance(obj, (set, frozenset, _cowstore.SetBase))


def _as_set(iterable):
    return iterable if _is_set(iterable) else set(iterable)


class _SetReads(_cowstore.SetBase):
    """Read-side methods shared by CowSet and FrozenSet."""
    __slots__ = ()

    def __init__(self, iterable=(), /):
        if self._fresh():
            # dict.fromkeys keeps the iterable's order, as update() does
            self._init(iterable if _is_set(iterable) else dict.fromkeys(iterable))
        else:
            self._refill(iterable)

    def _build(self, items):
        return type(self)(items)

    def union(self, *others):
        result = CowSet(self)
        for other in others:
            result.update(other)
        return self._build(result)

    def intersection(self, *others):
        result = CowSet(self)
        for other in others:
            other = _as_set(other)
            result = CowSet(x for x in result if x in other)
        return self._build(result)

    def difference(self, *others):
        result = CowSet(self)
        for other in others:
            for x in other:
                result.discard(x)
        return self._build(result)

    def symmetric_difference(self, other):
        result = CowSet(self)
        result.symmetric_difference_update(other)
        return self._build(result)

    def issubset(self, other):
        other = _as_set(other)
        return len(self) <= len(other) and all(x in other for x in self)

    def issuperset(self, other):
        return all(x in self for x in other)

    def isdisjoint(self, other):
        return not any(x in self for x in other)

    def __or__(self, other):
        return self.union(other) if _is_set(other) else NotImplemented

    def __and__(self, other):
        return self.intersection(other) if _is_set(other) else NotImplemented

    def __sub__(self, other):
        return self.difference(other) if _is_set(other) else NotImplemented

    def __xor__(self, other):
        return self.symmetric_difference(other) if _is_set(other) else NotImplemented

    def __rsub__(self, other):
        return self._build(CowSet(other).difference(self)) if _is_set(other) else NotImplemented

    def __ror__(self, other):
        # other's elements first, so of two equal ones (1, 1.0) other's is kept, as set does
        return self._build(CowSet(other).union(self)) if _is_set(other) else NotImplemented

    __rand__ = __and__
    __rxor__ = __xor__

    def __eq__(self, other):
        if isinstance(other, _cowstore.SetBase):
            return self._equal(other)
        if isinstance(other, (set, frozenset)):
            return len(self) == len(other) and all(x in self for x in other)
        return NotImplemented

    def __le__(self, other):
        return self.issubset(other) if _is_set(other) else NotImplemented

    def __lt__(self, other):
        return len(self) < len(other) and self.issubset(other) if _is_set(other) else NotImplemented

    def __ge__(self, other):
        return self.issuperset(other) if _is_set(other) else NotImplemented

    def __gt__(self, other):
        return len(self) > len(other) and self.issuperset(other) if _is_set(other) else NotImplemented

    def __repr__(self):
        if not len(self):
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}({{{', '.join(map(repr, self))}}})"

    def __reduce__(self):
        # Unchanged store-backed values pickle as a reference to their pages.
        return store_reference(self) or (type(self), (self._thaw(),))

    def __reduce_ex__(self, protocol):
        # Protocol 5: the parcel, out of band when pickle has a buffer_callback.
        return reduce_ex(self, protocol, self.__reduce__)

    __class_getitem__ = classmethod(GenericAlias)


class CowSet(_SetReads):
    """A set with O(1) copy, built on the same persistent map as CowDict.

    Iterates in insertion order; ``pop()`` removes the most recent element.
    """
    __slots__ = ()
    __hash__ = None

    def _refill(self, iterable):
        # set.__init__ on a set: clear, then update (reading the now empty set)
        _cowstore.SetBase.clear(self)
        for x in iterable:
            _cowstore.SetBase.add(self, x)

    def discard(self, element):
        self._discard(element)

    def remove(self, element):
        if not self._discard(element):
            raise KeyError(element)

    def update(self, *others):
        for other in others:
            for x in other:
                self.add(x)

    def intersection_update(self, *others):
        kept = self.intersection(*others)
        self.clear()
        self.update(kept)

    def difference_update(self, *others):
        for other in others:
            for x in other:
                self._discard(x)

    def symmetric_difference_update(self, other):
        for x in CowSet(_as_set(other)):
            if not self._discard(x):
                self.add(x)

    def __ior__(self, other):
        if not _is_set(other):
            return NotImplemented
        self.update(other)
        return self

    def __iand__(self, other):
        if not _is_set(other):
            return NotImplemented
        self.intersection_update(other)
        return self

    def __isub__(self, other):
        if not _is_set(other):
            return NotImplemented
        self.difference_update(other)
        return self

    def __ixor__(self, other):
        if not _is_set(other):
            return NotImplemented
        self.symmetric_difference_update(other)
        return self


class FrozenSet(_SetReads):
    """An immutable CowSet (what a stored ``frozenset`` reads back as)."""
    __slots__ = ()

    def _refill(self, iterable):
        pass                # as frozenset.__init__: the contents were fixed at creation

    def __hash__(self):
        # It equals the frozenset of its elements, so it must hash like one:
        # a stored frozenset key read back must still find its twin in a set.
        return hash(frozenset(self))


MutableSet.register(CowSet)
Set.register(FrozenSet)
