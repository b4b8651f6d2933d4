"""diff(a, b): the changes between two versions that share structure.

The walk is ``_cowstore._diff`` (csrc/python/diff.c): it skips every node
both versions share and makes Python objects only for what it reports, so
diffing a version against a copy with k changes costs O(k log n), not O(n).
"""
from typing import Any, Iterator, NamedTuple, Tuple

from . import _cowstore

class _Missing:
    """The one MISSING: copies and pickles are itself, so a Change keeps its
    kind through copy.deepcopy and a process pool."""
    __slots__ = ()

    def __repr__(self):
        return "MISSING"

    def __reduce__(self):
        return "MISSING"            # pickled by name: cowstore._diff.MISSING

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


MISSING: Any = _Missing()


class Change(NamedTuple):
    """One difference: the value at ``path`` went from ``old`` to ``new``.

    ``old`` is ``MISSING`` for an addition, ``new`` is ``MISSING`` for a
    removal.  ``path`` is a tuple of keys and list indices from the root.
    """
    path: Tuple[Any, ...]
    old: Any
    new: Any

    @property
    def kind(self) -> str:
        if self.old is MISSING:
            return "added"
        if self.new is MISSING:
            return "removed"
        return "changed"


def diff(a, b) -> Iterator[Change]:
    """Yield a Change for every path whose value differs between a and b.

    Both must be cowstore containers (CowDict/CowList/CowSet or frozen);
    plain dicts and lists are frozen first, losing the sharing short-cut.
    Two dicts (or two lists), frozen or not, are compared key by key and
    nested ones recursively; any other pair is one Change when the types
    differ or the values are unequal (numpy arrays: by dtype, shape and
    bytes).  Sets are compared whole: a changed set is one Change.  Lazy:
    nothing is read until the first Change is asked for, and the walk then
    reads a and b as they were at that moment.
    """
    return _cowstore._diff(a, b, Change, MISSING)
