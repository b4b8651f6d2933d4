"""Paths into a store: ``train/rows/3/name`` names root ``train``, then key
``rows``, index 3, key ``name``.

Steps are separated by ``/`` (a leading or trailing one is ignored); inside
a step ``~1`` stands for ``/`` and ``~0`` for ``~`` (JSON Pointer's escapes,
RFC 6901), and ``~{h}`` for the character of hex code h (``~{a}`` a
newline), ``~{}`` for nothing -- so every str key can be named, the empty
one as the step ``~{}``.  A step into a dict is the str key if present, else
the int key it spells (dicts loaded from Python may have int keys); a step
into a list is an index, negative ones counting from the end as in Python.
A whole step ``~(literal)`` names the key that Python literal spells:
``~(None)``, ``~(1.5)``, ``~((1, 2))``, ``~(b'k')``, ``~(5)`` (the int where
a str "5" is also a key).

:func:`step_text` is the inverse: how ls, du and diff print a key, always a
step that names it back, with characters that are not printable (newlines
and other controls) escaped so one key stays on one line.
"""
import ast
import re

from ._cowstore import CorruptStoreError, CowstoreError, DictBase, ListBase
from ._types import type_name

_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")
_ESCAPE = re.compile(r"~(0|1|\{([0-9a-fA-F]*)\})")


class PathError(CowstoreError, LookupError):
    """A path names nothing: a missing key, an index out of range, or a step
    into something that is not a dict or list."""


class Literal:
    """A ``~(literal)`` step: the key a Python literal spells."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return f"~({self.text})"

    def key(self):
        try:
            return ast.literal_eval(self.text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise PathError(f"{self!r} is not a Python literal (keys of other types, such as "
                            "dates, have no path: read them from Python)") from None


def _unescape(text):
    def one(m):
        if m[2] is not None:
            return chr(int(m[2], 16)) if m[2] else ""
        return "~" if m[1] == "0" else "/"
    try:
        return _ESCAPE.sub(one, text)
    except (ValueError, OverflowError):
        raise PathError(f"{text!r}: a ~{{h}} escape names no character "
                        "(the last is ~{10ffff})") from None


def _parse_step(step):
    if step.startswith("~(") and step.endswith(")"):
        return Literal(_unescape(step[2:-1]))
    return _unescape(step)


def split(path):
    """'a/b~1c/3' -> ['a', 'b/c', '3'] (a leading or trailing / is ignored);
    a ~(literal) step becomes a Literal."""
    path = path.strip("/")
    if not path:
        return []
    return [_parse_step(step) for step in path.split("/")]


def _escape(text):
    text = text.replace("~", "~0").replace("/", "~1")
    if text.isprintable() and text:
        return text
    return "".join(c if c.isprintable() else f"~{{{ord(c):x}}}" for c in text) or "~{}"


def step_text(key, container=None):
    """The step naming key: a str escaped, an int as its digits (unless a
    str key of `container` spells the same), any other key ~(its repr)."""
    if isinstance(key, str):
        return _escape(key)
    if type(key) is int and not (container is not None and str(key) in container):
        return str(key)
    return f"~({_escape(repr(key))})"


def join(steps):
    return "/".join(step_text(step) for step in steps)


def step_into(value, step, where):
    """value[step] for one step (text or Literal), or PathError naming where
    it failed."""
    if isinstance(step, Literal):
        return _step_literal(value, step, where)
    if isinstance(value, DictBase):
        if step in value:
            return value[step], step
        if _INT.match(step) and int(step) in value:
            return value[int(step)], int(step)
        raise PathError(f"no key {step!r} in the dict at {where}")
    if isinstance(value, ListBase):
        if not _INT.match(step):
            raise PathError(f"{step!r} is not an index of the list at {where}")
        return _index(value, int(step), where)
    raise _no_steps(value, where)


def _step_literal(value, step, where):
    key = step.key()
    if isinstance(value, DictBase):
        try:
            if key in value:
                return value[key], key
        except TypeError:               # unhashable: a list literal
            pass
        raise PathError(f"no key {key!r} in the dict at {where}")
    if isinstance(value, ListBase):
        if type(key) is not int:
            raise PathError(f"{step!r} is not an index of the list at {where}")
        return _index(value, key, where)
    raise _no_steps(value, where)


def _index(value, index, where):
    if not -len(value) <= index < len(value):
        raise PathError(f"index {index} is out of range for the list at {where} "
                        f"(length {len(value)})")
    return value[index], index


def _no_steps(value, where):
    name = type_name(value)
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return PathError(f"{where} is {article} {name}: paths step only into dicts and lists")


def resolve(store, path):
    """(value, steps) for a path whose first step is a root name."""
    steps = split(path)
    if not steps:
        raise PathError("an empty path names no root")
    name = steps[0]
    if isinstance(name, Literal) or name not in store:
        raise PathError(f"no root named {name!r} in {store.path}")
    value, keys = store[name], [name]
    for step in steps[1:]:
        try:
            value, key = step_into(value, step, join(keys))
        except CorruptStoreError as e:  # a pickled leaf, a class not registered here, damage
            raise type(e)(f"{e} (in {join(keys)}/{step_text(step)})") from None
        keys.append(key)
    return value, keys
