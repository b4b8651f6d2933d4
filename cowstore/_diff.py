"""diff(a, b): the changes between two versions that share structure.

Only the parts of a and b held in different nodes are looked at
(``_cowstore._changed`` skips every shared subtree), so diffing a version
against a copy with k changes costs O(k log n), not O(n).
"""
from typing import Any, Iterator, NamedTuple, Tuple

from . import _cowstore
from ._types import is_ndarray

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


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


def _same_kind(a, b):
    for base in (_cowstore.DictBase, _cowstore.ListBase):
        if isinstance(a, base) and isinstance(b, base):
            return True
    return False


def _lookup(container, key):
    if isinstance(container, _cowstore.DictBase):
        return container.get(key, MISSING)
    return container[key] if 0 <= key < len(container) else MISSING


def _differs(old, new):
    """Whether two leaves differ; numpy arrays by dtype, shape and bytes
    (their == is elementwise, with no single truth value)."""
    if type(old) is not type(new):
        return True
    if is_ndarray(old):
        return old.dtype != new.dtype or old.shape != new.shape or old.tobytes() != new.tobytes()
    return not (old == new)


def _walk(a, b, path):
    if a._shares(b):
        return
    seen = set()
    for key in _cowstore._changed(a, b):
        if key in seen:
            continue
        seen.add(key)
        old, new = _lookup(a, key), _lookup(b, key)
        if old is MISSING and new is MISSING:
            continue
        if old is not MISSING and new is not MISSING and _same_kind(old, new):
            yield from _walk(old, new, path + (key,))
        elif old is MISSING or new is MISSING or _differs(old, new):
            yield Change(path + (key,), old, new)


def diff(a, b) -> Iterator[Change]:
    """Yield a Change for every path whose value differs between a and b.

    Both must be cowstore containers (CowDict/CowList/CowSet or frozen);
    plain dicts and lists are frozen first, losing the sharing short-cut.
    Sets are compared whole: a changed set is one Change.
    """
    if not isinstance(a, (_cowstore.DictBase, _cowstore.ListBase, _cowstore.SetBase)):
        a = _cowstore.freeze(a)
    if not isinstance(b, (_cowstore.DictBase, _cowstore.ListBase, _cowstore.SetBase)):
        b = _cowstore.freeze(b)
    if _same_kind(a, b):
        yield from _walk(a, b, ())
    elif _differs(a, b):
        yield Change((), a, b)
