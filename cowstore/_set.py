"""CowSet and FrozenSet: the set API on the same persistent map core.

The C base (``_cowstore.SetBase``) implements membership, ``add``,
``discard``, ``remove``, ``pop``, ``clear``, ``copy``, iteration (in insertion
order) and the loops of the set algebra (``_add_all``, ``_keep_in``...: on two
sets of ours they work on the maps' keys, csrc/core/set_algebra.c); this
module composes the algebra from them and adds comparisons, ``repr`` and
pickling.
"""
from collections.abc import MutableSet, Set
from types import GenericAlias

from . import _cowstore, _subclass
from ._parcel import by_value, reduce_ex
from ._ref import store_reference


def _is_set(obj):
    # A set, or set-like as collections.abc.Set says (dict.keys(), items()),
    # which set's own operators and comparisons accept too.
    return isinstance(obj, (set, frozenset, _cowstore.SetBase, Set))


def _as_set(iterable):
    return iterable if _is_set(iterable) else set(iterable)


class _SetReads(_cowstore.SetBase):
    """Read-side methods shared by CowSet and FrozenSet."""
    __slots__ = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _subclass.adopt(cls)

    def __init__(self, iterable=(), /):
        if self._fresh():
            # dict.fromkeys keeps the iterable's order, as update() does; a
            # set-like that is no set (dict.keys()) is no value to store.  An
            # exact dict is read in place, its keys in order (_init), where
            # fromkeys copied it first: at 10^6 keys the copy took as long
            # again as the build
            self._init(iterable if isinstance(iterable, (set, frozenset, _cowstore.SetBase))
                       or type(iterable) is dict else dict.fromkeys(iterable))
        else:
            self._refill(iterable)

    def _build(self, items):
        return _subclass.own_type(self)(items)

    def _build_reflected(self, other, items):
        # other op self, other a builtin set or frozenset, which defers to
        # us: the result is ours, mutable as the left operand is (as
        # frozenset | set gives a frozenset), so that s |= FrozenSet(...)
        # leaves s a mutable set.
        if isinstance(other, frozenset):
            return FrozenSet(items)
        return CowSet(items) if isinstance(other, set) else self._build(items)

    # The loops run in C (SetBase's _add_all, _keep_in, _holds_all...):
    # between two sets of ours on their keys, without an object per element.

    def union(self, *others):
        result = CowSet(self)
        for other in others:
            result._add_all(other)
        return self._build(result)

    def intersection(self, *others):
        # As set: the smaller side is iterated (the other one when of equal
        # size, or not a set) and keeps its element of two equal ones (1, True).
        result = CowSet(self)
        for other in others:
            if _is_set(other) and len(other) > len(result):
                result._keep_in(other)
            else:
                kept = CowSet()
                kept._add_found(other, result)
                result = kept
        return self._build(result)

    def difference(self, *others):
        result = CowSet(self)
        for other in others:
            _remove_all(result, other)
        return self._build(result)

    def symmetric_difference(self, other):
        result = CowSet(self)
        result.symmetric_difference_update(other)
        return self._build(result)

    def issubset(self, other):
        if isinstance(other, _cowstore.SetBase):
            return other._holds_all(self)       # which compares the sizes first
        if type(other) in (set, frozenset):
            return other.issuperset(self)       # set's loop, over our iteration
        other = _as_set(other)
        return len(self) <= len(other) and all(x in other for x in self)

    def issuperset(self, other):
        return self._holds_all(other)

    def isdisjoint(self, other):
        return not self._holds_any(other)

    def __or__(self, other):
        return self.union(other) if _is_set(other) else NotImplemented

    def __and__(self, other):
        return self.intersection(other) if _is_set(other) else NotImplemented

    def __sub__(self, other):
        return self.difference(other) if _is_set(other) else NotImplemented

    def __xor__(self, other):
        return self.symmetric_difference(other) if _is_set(other) else NotImplemented

    def _reflected(self, other, method):
        # other op self: other's elements first, so of two equal ones (1,
        # 1.0) other's is kept, as set does
        if not _is_set(other):
            return NotImplemented
        return self._build_reflected(other, getattr(CowSet(other), method)(self))

    def __rsub__(self, other):
        return self._reflected(other, "difference")

    def __ror__(self, other):
        return self._reflected(other, "union")

    def __rand__(self, other):
        return self._reflected(other, "intersection")

    def __rxor__(self, other):
        return self._reflected(other, "symmetric_difference")

    def __eq__(self, other):
        if isinstance(other, _cowstore.SetBase):
            return self._equal(other)
        if _is_set(other):
            return len(self) == len(other) and self._holds_all(other)
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
        return store_reference(self) or by_value(self)

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

    def update(self, *others):
        for other in others:
            self._add_all(other)

    def intersection_update(self, *others):
        kept = self.intersection(*others)
        self._swap(kept if isinstance(kept, _cowstore.SetBase) else CowSet(kept))

    def _all_or_nothing(self, method, other):
        """work.method(other) on a copy of self, then swapped in (_swap
        allocates nothing): a MemoryError half way leaves self as it was, as
        set's operators, which resize before they change anything.  The
        copy is O(1); its first write copies a path, so one element, whose
        add or discard changes all or nothing alone, goes straight in."""
        if len(other) <= 1:
            getattr(self, method)(other)
            return
        work = self.copy()
        getattr(work, method)(other)
        self._swap(work)

    def difference_update(self, *others):
        for other in others:
            _remove_all(self, other)

    def symmetric_difference_update(self, other):
        # other's elements made distinct first (a set of ours as it is)
        self._toggle_all(other if type(other) in (CowSet, FrozenSet) else CowSet(_as_set(other)))

    def __ior__(self, other):
        if not _is_set(other):
            return NotImplemented
        self._all_or_nothing("update", other)
        return self

    def __iand__(self, other):
        if not _is_set(other):
            return NotImplemented
        self.intersection_update(other)
        return self

    def __isub__(self, other):
        if not _is_set(other):
            return NotImplemented
        self._all_or_nothing("difference_update", other)
        return self

    def __ixor__(self, other):
        if not _is_set(other):
            return NotImplemented
        self._all_or_nothing("symmetric_difference_update", other)
        return self


def _remove_all(result, other):
    """result -= other, walking the smaller side: result's elements, looked
    up in other, when other is the larger set."""
    if _is_set(other) and len(other) > len(result):
        result._drop_in(other)
    else:
        result._discard_all(other)


def _immutable(self, *args):
    raise _cowstore.FrozenError(f"'{type(self).__name__}' object is immutable")


class FrozenSet(_SetReads):
    """An immutable CowSet (what a stored ``frozenset`` reads back as)."""
    __slots__ = ()

    # The mutators CowSet adds to the C base raise as the base's do.
    discard = remove = update = _immutable
    intersection_update = difference_update = symmetric_difference_update = _immutable

    def _refill(self, iterable):
        pass                # as frozenset.__init__: the contents were fixed at creation

    def __hash__(self):
        # It equals the frozenset of its elements, so it must hash like one:
        # a stored frozenset key read back must still find its twin in a set.
        return hash(frozenset(self))


MutableSet.register(CowSet)
Set.register(FrozenSet)
