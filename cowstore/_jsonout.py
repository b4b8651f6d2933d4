"""Writing stored values as JSON, streamed.

A container of at most SMALL entries is converted whole (``thaw``) and
written by ``json.dumps``; a bigger one is written entry by entry, so the
memory used is bounded by SMALL entries however big the value.  The text is
exactly what ``json.dumps(thaw(value), indent=..., ensure_ascii=False)``
would give (tests check it), with these conversions for what JSON lacks:

- numpy arrays become nested lists (``arrays="list"``) or a one-string
  summary such as ``"ndarray(float32, shape=(1000, 3))"``, with
  ``arrays="digest"`` followed by a digest of the contents (`` #1a2b3c4d``:
  diff's previews, where two summaries alike may hide a change);
- sets become arrays (in their iteration order), tuples arrays as json does;
- extension leaves take the forms in docs/semantics.md ("Values cowstore
  stores"): datetimes, dates and times ISO 8601 strings, timedeltas ISO 8601
  durations, Decimals, Fractions and UUIDs strings, complex numbers
  [real, imag], enum members their value, dataclasses objects of their
  fields, namedtuples arrays, registered classes their data; as dict keys,
  those whose form is a string that string, those whose form is a number,
  bool or None (an enum member of value 3) the key json.dumps makes of it
  ("3");
- bytes, and other dict keys (tuples, namedtuples, dataclasses, complex
  numbers), have no JSON form: :class:`JsonOutputError` names where they are.
"""
import hashlib
import json

from ._cowstore import DictBase, ListBase, SetBase, thaw
from ._ext import _NO_FORM, json_form, json_key
from ._paths import join
from ._types import is_container, is_ndarray

# Containers up to this many entries are converted and dumped in one piece.
SMALL = 512
# A streamed list's runs of plain scalars are dumped this many at a time: one
# json.dumps per element made `get` of 3 million ints take 11 s.
SCALAR_RUN = 512
# Types json.dumps writes itself, which a run may hold.
_PLAIN = frozenset({str, int, float, bool, type(None)})


class JsonOutputError(ValueError):
    """A value with no JSON form."""


# Bytes of the digest a summary may carry: enough to tell a change at a glance.
DIGEST_BYTES = 4


def array_summary(array, digest=False):
    text = f"ndarray({array.dtype}, shape={tuple(array.shape)})"
    if digest:
        data = array.tobytes()          # C order, whatever the array's layout
        text += f" #{hashlib.blake2b(data, digest_size=DIGEST_BYTES).hexdigest()}"
    return text


class _KeyText(str):
    """A key's JSON string that stays a key of its own: a date key whose
    string is also a str key of the same dict ({date(2024, 1, 1): ..,
    "2024-01-01": ..}) must be written twice, as json.dumps writes
    {1: .., "1": ..} and as the streamed path writes it."""
    __hash__ = object.__hash__
    __eq__ = object.__eq__


def _string_keys(data):
    """data with dict keys of extension types (datetime, Decimal, UUID...)
    replaced by their JSON strings; other keys are left for json to judge."""
    if isinstance(data, dict):
        return {(_KeyText(json_key(k)) if json_key(k) is not None else k): _string_keys(v)
                for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_string_keys(e) for e in data]
    return data


def _fits(value):
    """Whether container value holds at most about SMALL entries, its nested
    containers' and arrays' included (counted in C, stopping as soon as it
    does not): it is then converted and dumped in one piece.  A small dict
    holding a huge list is written entry by entry, so the list is streamed."""
    return value._small(SMALL)


class _Nowhere:
    def write(self, text):
        pass


def _array_entries(array):
    """(index, element) of a big array's first axis: a 1-D one's elements
    as Python scalars, converted SCALAR_RUN at a time (so they are written
    as runs, not one json.dumps each: 3 million floats took 10 s), rows of
    a deeper one as arrays."""
    for start in range(0, len(array), SCALAR_RUN):
        part = array[start:start + SCALAR_RUN]
        yield from enumerate(part.tolist() if array.ndim == 1 else part, start)


class JsonWriter:
    """Writes values to a text stream `out` as JSON."""

    def __init__(self, out, indent=None, arrays="list"):
        self._out = out
        self._indent = indent
        self._arrays = arrays
        self._item_sep = "," if indent is not None else ", "

    def write(self, value, path=()):
        self._write(value, 0, list(path))

    def _write(self, value, level, path):
        if isinstance(value, DictBase) and not _fits(value):
            self._write_entries(value.items(), level, path, "{}", keyed=True)
        elif isinstance(value, (ListBase, SetBase)) and not _fits(value):
            self._write_entries(enumerate(value), level, path, "[]", keyed=False)
        elif is_ndarray(value) and self._arrays == "list" and value.ndim and value.size > SMALL:
            self._write_entries(_array_entries(value), level, path, "[]", keyed=False)
        else:
            self._out.write(self._dumps(value, level, path))

    def _write_entries(self, entries, level, path, brackets, keyed):
        indent = self._indent
        self._out.write(brackets[0])
        first = True
        run = []                        # (index, scalar) of a list, not yet written
        for key, item in entries:
            if not keyed and type(item) in _PLAIN:
                run.append((key, item))
                if len(run) == SCALAR_RUN:
                    first, run = self._write_run(run, level, path, first), []
                continue
            if run:
                first, run = self._write_run(run, level, path, first), []
            first = self._write_entry(key, item, level, path, first, keyed)
        if run:
            first = self._write_run(run, level, path, first)
        if not first and indent is not None:
            self._out.write("\n" + " " * (indent * level))
        self._out.write(brackets[1])

    def _write_entry(self, key, item, level, path, first, keyed):
        """Writes one entry of a container at `level`; returns False (the
        next entry is not the first)."""
        indent = self._indent
        newline = "\n" + " " * (indent * (level + 1)) if indent is not None else ""
        self._out.write(newline if first else self._item_sep + newline)
        if keyed:
            self._out.write(self._key_json(key, path) + ": ")
        self._write(item, level + 1, path + [key])
        return False

    def _write_run(self, run, level, path, first):
        """Writes list entries that are plain scalars with one json.dumps of
        them as a list at `level`, its brackets cut off: the same text as
        entry by entry."""
        try:
            text = self._dumps_plain([item for _, item in run])
        except ValueError:              # an int past Python's digit limit: say where
            for key, item in run:
                first = self._write_entry(key, item, level, path, first, False)
            return first
        if self._indent is None:
            inner = text[1:-1]
        else:                           # "[" ... "\n" + the level's indent + "]"
            if self._indent and level:
                text = text.replace("\n", "\n" + " " * (self._indent * level))
            inner = text[1:text.rindex("\n")]
        self._out.write(inner if first else self._item_sep + inner)
        return False

    def _dumps(self, value, level, path):
        """json.dumps of a small value, indented for its nesting level."""
        # A tuple is no container but may hold some: ({"a": 1},).
        data = thaw(value) if is_container(value) or isinstance(value, tuple) else value
        try:
            try:
                text = self._dumps_plain(data)
            except TypeError:                   # a key json cannot write: a datetime's?
                text = self._dumps_plain(_string_keys(data))
        except (TypeError, JsonOutputError) as e:      # TypeError: a key json cannot write
            if isinstance(value, (DictBase, ListBase, SetBase, tuple)):
                self._locate(value, path)
            raise JsonOutputError(f"{e} (in {join(path) or 'the value'})") from None
        if self._indent and level:
            text = text.replace("\n", "\n" + " " * (self._indent * level))
        return text

    def _dumps_plain(self, data):
        return json.dumps(data, indent=self._indent, ensure_ascii=False, default=self._default)

    def _locate(self, value, path):
        """json.dumps does not say where it failed: write the value entry by
        entry to nowhere, so the entry that fails raises naming its path."""
        entries = value.items() if isinstance(value, DictBase) else enumerate(value)
        nowhere = JsonWriter(_Nowhere(), self._indent, self._arrays)
        nowhere._write_entries(entries, 0, list(path), "{}", keyed=isinstance(value, DictBase))

    def _default(self, obj):
        if is_ndarray(obj):
            if self._arrays == "list":
                return obj.tolist()
            return array_summary(obj, digest=self._arrays == "digest")
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if is_container(obj):           # a FrozenDict in a set: thaw keeps set members frozen
            return _string_keys(thaw(obj))
        if type(obj).__module__ == "numpy" and hasattr(obj, "item"):
            item = obj.item()           # an array's element (np.int32, np.float64, ...)
            if type(item) is type(obj):     # np.longdouble: no Python type holds it
                item = complex(obj) if obj.dtype.kind == "c" else float(obj)
            return item
        form = json_form(obj)
        if form is not _NO_FORM:        # a record's fields may hold {date: ...}
            return _string_keys(form)
        raise JsonOutputError(f"{type(obj).__name__} has no JSON form")

    def _key_json(self, key, path):
        if isinstance(key, str):
            text = key
        elif key is None or isinstance(key, (bool, int, float)):
            text = json.dumps(key)          # true, 5, 1.5, NaN, null: as json.dumps keys
        elif json_key(key) is not None:
            text = json_key(key)            # a datetime, Decimal, UUID...: its string
        else:
            raise JsonOutputError(f"a {type(key).__name__} key has no JSON form "
                                  f"(in {join(path) or 'the value'})")
        return json.dumps(text, ensure_ascii=False)
