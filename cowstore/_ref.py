"""Pickling store-backed containers as references (store path, root, path).

Kept apart from _store.py so the container modules can import it without
importing the store machinery at class-definition time."""


def store_reference(obj):
    """The ``__reduce__`` tuple of an unchanged store-backed container, else None."""
    origin = obj._origin()
    if origin is None:
        return None
    (anchor, name), path, word = origin
    from ._store import _resolve_reference
    return (_resolve_reference, (anchor.path, name, path, word))
