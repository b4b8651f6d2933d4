"""Paths into a store: ``train/rows/3/name`` names root ``train``, then key
``rows``, index 3, key ``name``.

Steps are separated by ``/``; inside a step ``~1`` stands for ``/`` and
``~0`` for ``~`` (JSON Pointer's escapes, RFC 6901), so every str key can be
named.  A step into a dict is the str key if present, else the int key it
spells (dicts loaded from Python may have int keys); a step into a list is
an index, negative ones counting from the end as in Python.
"""
import re

from ._cowstore import CowstoreError, DictBase, ListBase
from ._types import type_name

_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")


class PathError(CowstoreError, LookupError):
    """A path names nothing: a missing key, an index out of range, or a step
    into something that is not a dict or list."""


def split(path):
    """'a/b~1c/3' -> ['a', 'b/c', '3'] (a leading or trailing / is ignored)."""
    path = path.strip("/")
    if not path:
        return []
    return [step.replace("~1", "/").replace("~0", "~") for step in path.split("/")]


def escape_step(key):
    """The text naming key in a path (non-str keys by repr, e.g. 3 or (1, 2))."""
    if isinstance(key, str):
        return key.replace("~", "~0").replace("/", "~1")
    return repr(key)


def join(steps):
    return "/".join(escape_step(step) for step in steps)


def step_into(value, step, where):
    """value[step] for one text step, or PathError naming where it failed."""
    if isinstance(value, DictBase):
        if step in value:
            return value[step], step
        if _INT.match(step) and int(step) in value:
            return value[int(step)], int(step)
        raise PathError(f"no key {step!r} in the dict at {where}")
    if isinstance(value, ListBase):
        if not _INT.match(step):
            raise PathError(f"{step!r} is not an index of the list at {where}")
        index = int(step)
        if not -len(value) <= index < len(value):
            raise PathError(f"index {index} is out of range for the list at {where} "
                            f"(length {len(value)})")
        return value[index], index
    name = type_name(value)
    article = "an" if name[:1].lower() in "aeiou" else "a"
    raise PathError(f"{where} is {article} {name}, which has no {step!r} inside")


def resolve(store, path):
    """(value, steps) for a path whose first step is a root name."""
    steps = split(path)
    if not steps:
        raise PathError("an empty path names no root")
    name = steps[0]
    if name not in store:
        raise PathError(f"no root named {name!r} in {store.path}")
    value, keys = store[name], [name]
    for step in steps[1:]:
        value, key = step_into(value, step, join(keys))
        keys.append(key)
    return value, keys
