"""Extension leaves: the bytes of the values beyond the builtins.

The C binding calls ``encode(obj)`` for an object of a type it does not know
and stores the bytes it returns as one SEXT/EXT value (at most 14 bytes
inline in the 16-byte cow_val, else a blob); reading calls ``decode(data)``.
The layouts, and what the core reads of them to hash and compare, are in
csrc/include/cowstore/ext.h; in short (all little-endian)::

    DATETIME  1 | u64 word | [i40 offset us] | [zone key or timezone name]
    DATE      2 | u32 proleptic ordinal
    TIME      3 | u64 word | [i40 offset us] | [timezone name]
    TIMEDELTA 4 | i32 days | u32 seconds | u32 microseconds
    DECIMAL   5 | numeric key | flags | zigzag exponent or NaN digits
    FRACTION  6 | numeric key                    (the key is the value)
    COMPLEX   7 | f64 real | f64 imag
    UUID      8 | 16 bytes
    ENUM, NAMEDTUPLE, DATACLASS, USER, PICKLE (16..20, +0x80 if unhashable)
              | counted class path "module:qualname" | record

A datetime word holds the local time in microseconds (bits 0..58), then the
aware bit, the fold bit and the zone kind (naive, UTC, fixed offset,
zoneinfo).  A fixed offset's name is absent when it is the default one
("UTC+01:00"); the default's text stands for the empty name.  A record is
a small tagged encoding of the object's data (None, bools, ints, floats,
str, bytes, tuples, lists, dicts, sets and nested extension leaves).
Reading a class record imports the module its path names and accepts only a
class of the record's kind (an Enum, a namedtuple, a dataclass; registered
classes by their registration); pickled leaves are read only while the
pickle fallback is on (unpickling runs code).

Every malformed byte string raises CorruptStoreError.
"""
import dataclasses
import datetime as _dt
import decimal
import enum
import fractions
import importlib
import json
import math
import numbers
import pickle
import struct
import sys
import uuid

from ._cowstore import CorruptStoreError, CowOverflowError, CycleError

DATETIME, DATE, TIME, TIMEDELTA, DECIMAL, FRACTION, COMPLEX, UUID = range(1, 9)
ENUM, NAMEDTUPLE, DATACLASS, USER, PICKLE = range(16, 21)
UNHASHABLE = 0x80
OBJECT_KINDS = (ENUM, NAMEDTUPLE, DATACLASS, USER, PICKLE)

K_INT, K_FLOAT, K_BIG, K_RATIO, K_NAN, K_SNAN, K_DEC = range(1, 8)

# The datetime word (ext.h): local microseconds, then aware, fold, zone kind.
US_BITS = 59
AWARE_BIT, FOLD_BIT, ZONE_SHIFT = 59, 60, 61
ZONE_NAIVE, ZONE_UTC, ZONE_FIXED, ZONE_INFO = range(4)
OFFSET_BYTES = 5
# Decimals whose exponent is beyond this are keyed by their text: their
# exact ratio would be as long as the exponent (and they equal no float).
DEC_EXP_LIMIT = 1000
# How far a stored Decimal's exponent may lie below its canonical one (the
# trailing zeros its coefficient gets back): a bound on the work a damaged
# file can ask for.
DEC_SHIFT_LIMIT = 100_000
# A NaN's diagnostic digits (27 in the default context) fit this many bits.
NAN_PAYLOAD_BITS = 140
# Decimals of more digits than this are read back once when stored: one that
# would not read back (a limit of the reader's) is refused, never lost.
DEC_CHECKED_DIGITS = 64
NAN_CHECKED_DIGITS = 40
# Decimal flags: sign, then the kind of value.
DEC_SIGN, DEC_INF, DEC_NAN, DEC_SNAN = 1, 2, 4, 6

_EPOCH = _dt.datetime(1, 1, 1)
_US = _dt.timedelta(microseconds=1)

# Instances of subclasses of these (IntEnum, StrEnum, a str subclass) equal
# plain values, which a record by class path, or a pickle, cannot: they are
# not stored (UnsupportedTypeError; store the plain value), not even by the
# pickle fallback.  Enums mixing in any other data type are refused too.
_MIXINS = (int, float, str, bytes, complex, tuple, frozenset, set, decimal.Decimal,
           fractions.Fraction, uuid.UUID, _dt.date, _dt.time, _dt.timedelta)
# The classes stored natively, before any registered class is looked up.
_NATIVE = (type(None), bool, int, float, str, bytes, tuple, list, dict, set, frozenset,
           _dt.datetime, _dt.date, _dt.time, _dt.timedelta, decimal.Decimal,
           fractions.Fraction, complex, uuid.UUID)
# How deep the plain data of a record may nest (its writer and reader agree).
RECORD_MAX_DEPTH = 200
# What one record adds to the depth of what it holds: writing a level of
# records takes twice the Python frames of a level of containers, and hash()
# of the outermost walks them all again.
RECORD_LEVELS = 2

# cowstore.register: class -> (path, to_data, from_data); path -> class.
_registry = {}
_registered_paths = {}
# cowstore.set_fallback: None, or the pickle module.
_fallback = [None]


# ---- integers -------------------------------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _zigzag(n):
    return _varint(n << 1 if n >= 0 else ((-n) << 1) - 1)


def _int_bytes(n):
    return n.to_bytes((n + (n < 0)).bit_length() // 8 + 1, "little", signed=True)


def _counted(data):
    return _varint(len(data)) + data


class _Reader:
    """Bounds-checked reads from stored bytes."""

    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise CorruptStoreError("damaged extension value: truncated")
        part = self.data[self.pos:self.pos + n]
        self.pos += n
        return part

    def byte(self):
        return self.take(1)[0]

    def varint(self, max_bits=70):
        n = shift = 0
        while shift < max_bits:
            b = self.byte()
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
        raise CorruptStoreError("damaged extension value: varint too long")

    def zigzag(self):
        n = self.varint()
        return n >> 1 if not n & 1 else -((n + 1) >> 1)

    def counted(self, allow_empty=False):
        n = self.varint()
        if n == 0 and not allow_empty:
            raise CorruptStoreError("damaged extension value: empty field")
        return self.take(n)

    def end(self):
        if self.pos != len(self.data):
            raise CorruptStoreError("damaged extension value: trailing bytes")


# ---- numbers (ext.h E1) ---------------------------------------------------

def _ratio_key(r):
    """The numeric key of a Fraction: the simplest number equal to it."""
    n, d = r.numerator, r.denominator
    if d == 1:
        if -(1 << 63) <= n < (1 << 63):
            return bytes([K_INT]) + _zigzag(n)
        return bytes([K_BIG]) + _counted(_int_bytes(n))
    try:
        f = float(r)
    except OverflowError:
        f = None
    if f is not None and fractions.Fraction(f) == r:
        return bytes([K_FLOAT]) + struct.pack("<d", f)
    return bytes([K_RATIO]) + _counted(_int_bytes(n)) + _counted(_int_bytes(d))


def _decimal_key(x):
    if x.is_snan():
        return bytes([K_SNAN])
    if x.is_nan():
        return bytes([K_NAN])
    if x.is_infinite():
        return bytes([K_FLOAT]) + struct.pack("<d", float(x))
    sign, digits, exp = x.as_tuple()
    if not any(digits):
        return bytes([K_INT, 0])
    if abs(exp) > DEC_EXP_LIMIT:
        text = "".join(map(str, digits))        # no int: it may pass int's 4,300 digits
        coef = text.rstrip("0")
        exp += len(text) - len(coef)
        return bytes([K_DEC]) + _counted(f"{'-' if sign else ''}{coef}e{exp}".encode())
    return _ratio_key(fractions.Fraction(x))


def _skip_key(r):
    kind = r.byte()
    if kind == K_INT:
        return kind, r.zigzag()
    if kind == K_FLOAT:
        return kind, struct.unpack("<d", r.take(8))[0]
    if kind in (K_BIG, K_DEC):
        return kind, r.counted()
    if kind == K_RATIO:
        n = int.from_bytes(r.counted(), "little", signed=True)
        d = int.from_bytes(r.counted(), "little", signed=True)
        if d <= 1:
            raise CorruptStoreError("damaged extension value: bad denominator")
        return kind, (n, d)
    if kind in (K_NAN, K_SNAN):
        return kind, None
    raise CorruptStoreError("damaged extension value: unknown numeric key")


def _encode_decimal(x):
    """Key, flags, then the exponent of a finite one (its coefficient is the
    key's value scaled by it) or the diagnostic digits of a NaN."""
    sign, digits, exp = x.as_tuple()
    flags = sign
    if x.is_infinite():
        flags |= DEC_INF
    elif x.is_snan():
        flags |= DEC_SNAN
    elif x.is_nan():
        flags |= DEC_NAN
    body = bytes([flags])
    if x.is_finite():
        body += _zigzag(exp)
    elif x.is_nan():
        body += _varint(_digits_int(digits) if digits else 0)
    return bytes([DECIMAL]) + _decimal_key(x) + body


def _digits_int(digits):
    """The int of a Decimal's digit tuple, however many digits (int(str)
    refuses more than 4,300)."""
    return int(decimal.Decimal((0, digits, 0)))


def _int_digits(n):
    return decimal.Decimal(n).as_tuple().digits


def _key_ratio(kind, val):
    """The exact value of a finite numeric key (a Fraction), or None (K_DEC)."""
    if kind == K_INT:
        return fractions.Fraction(val)
    if kind == K_FLOAT and math.isfinite(val):
        return fractions.Fraction(val)
    if kind == K_BIG:
        return fractions.Fraction(int.from_bytes(val, "little", signed=True))
    if kind == K_RATIO:
        return fractions.Fraction(*val)
    if kind == K_DEC:
        return None
    raise CorruptStoreError("damaged extension value: bad numeric key")


def _finite_decimal(kind, val, sign, exp):
    if kind == K_DEC:
        text = val.decode("ascii")
        coef_text, _, norm_exp = text.lstrip("-").partition("e")
        shift = int(norm_exp) - exp
        if not 0 <= shift <= DEC_SHIFT_LIMIT or not coef_text.isdigit():
            raise CorruptStoreError("damaged extension value: Decimal exponent")
        return decimal.Decimal((sign, tuple(map(int, coef_text)) + (0,) * shift, exp))
    else:
        value = _key_ratio(kind, val)
        if value and abs(exp) > DEC_EXP_LIMIT:        # zero alone has any exponent
            raise CorruptStoreError("damaged extension value: Decimal exponent")
        scaled = abs(value) / fractions.Fraction(10) ** exp if value else value
        if scaled.denominator != 1:
            raise CorruptStoreError("damaged extension value: Decimal coefficient")
        coef = scaled.numerator
    return decimal.Decimal((sign, _int_digits(coef), exp))


def _decode_decimal(r):
    kind, val = _skip_key(r)
    flags = r.byte()
    sign, special = flags & DEC_SIGN, flags & ~DEC_SIGN
    if special == DEC_INF:
        return decimal.Decimal("-Infinity" if sign else "Infinity")
    if special in (DEC_NAN, DEC_SNAN):
        coef = r.varint(NAN_PAYLOAD_BITS)
        text = ("-" if sign else "") + ("sNaN" if special == DEC_SNAN else "NaN")
        return decimal.Decimal(text + (str(coef) if coef else ""))
    if special:
        raise CorruptStoreError("damaged extension value: bad Decimal flags")
    return _finite_decimal(kind, val, sign, r.zigzag())


def _decimal_reads_back(x, data):
    digits = len(x.as_tuple().digits)
    if digits <= (NAN_CHECKED_DIGITS if x.is_nan() else DEC_CHECKED_DIGITS):
        return True
    try:
        r = _Reader(data, 1)
        back = _decode_decimal(r)
        r.end()
    except CorruptStoreError:
        return False
    return back.as_tuple() == x.as_tuple()


def _decode_fraction(r):
    kind, val = _skip_key(r)
    value = _key_ratio(kind, val)
    if value is None:
        raise CorruptStoreError("damaged extension value: bad Fraction key")
    return value


# ---- dates and times (ext.h E2) --------------------------------------------

def _zone(tz, for_time):
    """(zone kind, extra bytes) of an aware value's tzinfo, or None."""
    if tz is _dt.timezone.utc:
        return ZONE_UTC, b""
    if type(tz) is _dt.timezone:
        off = tz.utcoffset(None)
        name = tz.tzname(None)
        default = _dt.timezone(off).tzname(None)
        if name == "":                  # default's text, never stored as a name, marks ""
            return ZONE_FIXED, default.encode()
        return ZONE_FIXED, (b"" if name == default else name.encode())
    key = getattr(tz, "key", None)
    if not for_time and type(tz).__module__ == "zoneinfo" and isinstance(key, str) and key:
        return ZONE_INFO, key.encode()
    return None


def _temporal(subtype, local_us, value):
    tz = value.tzinfo
    word = local_us | (value.fold << FOLD_BIT)
    if tz is None:
        return bytes([subtype]) + struct.pack("<Q", word)
    zone = _zone(tz, subtype == TIME)
    off = value.utcoffset()
    if zone is None or off is None:     # the zone is to blame, not the datetime
        e = _Unstorable(tz)
        e.steps.append(_Attribute("tzinfo"))
        raise e
    word |= 1 << AWARE_BIT | zone[0] << ZONE_SHIFT
    return (bytes([subtype]) + struct.pack("<Q", word)
            + (off // _US).to_bytes(OFFSET_BYTES, "little", signed=True) + zone[1])


def _encode_datetime(x):
    return _temporal(DATETIME, (x.replace(tzinfo=None, fold=0) - _EPOCH) // _US, x)


def _encode_time(x):
    us = ((x.hour * 60 + x.minute) * 60 + x.second) * 1_000_000 + x.microsecond
    return _temporal(TIME, us, x)


def _read_zone(r, kind):
    if kind == ZONE_NAIVE:
        return None
    off = _dt.timedelta(microseconds=int.from_bytes(r.take(OFFSET_BYTES), "little",
                                                    signed=True))
    extra = r.take(len(r.data) - r.pos).decode()
    if kind == ZONE_UTC:
        return _dt.timezone.utc
    if kind == ZONE_FIXED:
        default = _dt.timezone(off)
        return default if not extra else _dt.timezone(
            off, "" if extra == default.tzname(None) else extra)
    import zoneinfo
    return zoneinfo.ZoneInfo(extra)


def _decode_temporal(r, subtype):
    word = struct.unpack("<Q", r.take(8))[0]
    us = word & ((1 << US_BITS) - 1)
    fold, kind = word >> FOLD_BIT & 1, word >> ZONE_SHIFT & 3
    if (word >> AWARE_BIT & 1) != (kind != ZONE_NAIVE):
        raise CorruptStoreError("damaged extension value: bad zone bits")
    tz = _read_zone(r, kind)
    if subtype == DATETIME:
        return (_EPOCH + _dt.timedelta(microseconds=us)).replace(tzinfo=tz, fold=fold)
    secs, micro = divmod(us, 1_000_000)
    return _dt.time(secs // 3600, secs // 60 % 60, secs % 60, micro, tz, fold=fold)


# ---- records of class instances -------------------------------------------

def class_path(cls):
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve(path):
    """The class a "module:qualname" path names (ImportError if none)."""
    module, _, qualname = path.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ImportError(f"cowstore cannot find class {path!r}")
    return obj


def _importable(cls):
    try:
        return resolve(class_path(cls)) is cls
    except MemoryError:                 # says nothing about the class
        raise
    except Exception:
        return False


def _record(obj, depth=0, walk=None):
    """Bytes of plain data (a record's fields), nested leaves included;
    walk: see _Walk."""
    from . import _cowstore
    t = type(obj)
    if obj is None:
        return b"N"
    if obj is True or obj is False:
        return b"T" if obj else b"F"
    if t is int:
        return b"i" + _counted(_int_bytes(obj))
    if t is float:
        return b"f" + struct.pack("<d", obj)
    if t is str:
        return b"s" + _counted(obj.encode("utf-8"))
    if t is bytes:
        return b"b" + _counted(obj)
    if t in _CONTAINER_CODES or isinstance(obj, (dict, list, _cowstore.DictBase,
                                                 _cowstore.ListBase, _cowstore.SetBase)):
        return _container_record(obj, depth, walk if walk is not None else _Walk())
    data = _encode(obj, walk, depth)
    if data is None:
        raise _Unstorable(obj)
    if walk is not None and data[0] & UNHASHABLE:
        walk.lossy = True               # in a hashable record: equal by identity, or lossy
    return b"x" + _counted(data)


class _Walk:
    """What writing the records of one leaf keeps track of: `ids`, those of
    the records and containers being written around the current value (one
    met again inside is a cycle); `lossy`, whether a value written since the
    innermost record began may read back unlike itself to hash and compare
    (a hashable dict subclass, read back a dict; a record marked unhashable,
    though Python hashes it: one equal only to itself): that record is a key
    only if what reads back is equal to it and hashes alike (_keeps_hash)."""
    __slots__ = ("ids", "lossy")

    def __init__(self):
        self.ids, self.lossy = set(), False


# Plain containers in a record, and the frozen cowstore ones, which come
# back frozen (hashable, as they went in); mutable cowstore ones come back
# as the builtins, and so do subclasses of dict and list (OrderedDict,
# defaultdict), read as dict(x) and list(x) read them, as outside records.
_CONTAINER_CODES = {tuple: b"t", list: b"l", set: b"S", frozenset: b"Z", dict: b"d"}


def _frozen_code(obj):
    from ._dict import FrozenDict
    from ._list import FrozenList
    from ._set import FrozenSet
    for cls, code in ((FrozenList, b"L"), (FrozenDict, b"D"), (FrozenSet, b"Z")):
        if isinstance(obj, cls):
            return code
    return None


def _too_deep():
    return CowOverflowError(f"cowstore cannot store data nested more than {RECORD_MAX_DEPTH} "
                            "levels deep inside a dataclass, namedtuple or registered class "
                            "(records and containers both count)")


def _container_record(obj, depth, walk):
    from . import _cowstore
    if depth >= RECORD_MAX_DEPTH:
        raise _too_deep()
    if id(obj) in walk.ids:
        raise CycleError("cowstore cannot store a self-referencing structure inside a "
                         "dataclass, namedtuple or registered class")
    walk.ids.add(id(obj))               # the subclass's own id: its items may hold it
    try:
        code, items = _CONTAINER_CODES.get(type(obj)), obj
        if code is None and isinstance(obj, (dict, list)):
            items = dict(obj) if isinstance(obj, dict) else list(obj)
            code = _CONTAINER_CODES[type(items)]
            walk.lossy |= type(obj).__hash__ is not None
        elif code is None:              # a cowstore container
            code, items = _frozen_code(obj), _cowstore.thaw(obj)
            code = code or _CONTAINER_CODES[type(items)]
        if code == b"d" or code == b"D":
            parts = [_record(k, depth + 1, walk) + _record_at(k, v, depth + 1, walk)
                     for k, v in items.items()]
        elif code in (b"S", b"Z"):
            parts = [_record(e, depth + 1, walk) for e in items]
            parts.sort()                # canonical: equal sets give equal bytes
        else:
            parts = [_record_at(i, e, depth + 1, walk) for i, e in enumerate(items)]
    finally:
        walk.ids.discard(id(obj))
    return code + _varint(len(parts)) + b"".join(parts)


def _record_at(step, value, depth, walk):
    """_record(value), a refusal naming where value sits (key or index step)."""
    try:
        return _record(value, depth, walk)
    except _Unstorable as e:
        e.steps.insert(0, step)
        raise


class _Unstorable(Exception):
    """A record holds a value of a type cowstore cannot store: obj, found
    at steps (keys and indexes, Attribute names) below the record."""

    def __init__(self, obj):
        super().__init__(obj)
        self.obj, self.steps = obj, []


class _Attribute(str):
    """A step that names a field of a dataclass or namedtuple: '.name'."""


def _steps_repr(steps):
    return "".join(f".{s}" if isinstance(s, _Attribute) else f"[{s!r}]" for s in steps)


def refusal(obj):
    """Why encode refused obj: (the value to blame, where it sits below obj
    as '.field[2]...', a hint saying why, or ''), or None when obj's type
    is simply not one cowstore stores."""
    try:
        _encode(obj)
    except _Unstorable as e:
        if e.steps or e.obj is not obj:
            return e.obj, _steps_repr(e.steps), _why(e.obj)
    hint = _why(obj)
    return (obj, "", hint) if hint else None


def key_refusal(obj):
    """Why obj, which Python hashes, is no cowstore key (a leaf within it is
    written unhashable): (the value to blame, where it sits below obj as
    '.field[2]...', why)."""
    inner, steps = _unkeyed(obj) or (obj, [])
    if isinstance(inner, (dict, list)):
        base = "dict" if isinstance(inner, dict) else "list"
        return inner, _steps_repr(steps), (f"unhashable once stored: a {base} subclass is "
                                           f"stored as a plain {base}")
    cls = type(inner)
    if cls.__eq__ is object.__eq__ or cls.__hash__ is object.__hash__:
        how = "compared" if cls.__eq__ is object.__eq__ else "hashed"
        return inner, _steps_repr(steps), (f"unhashable by value: it is {how} by identity, and "
                                           "what a store reads back is a copy (store it as a "
                                           "value)")
    return inner, _steps_repr(steps), ("unhashable once stored: what a store reads back would "
                                       "not equal it or hash alike")


def _unkeyed(x):
    """(the value within key x that makes it no key, its steps below x), or
    None: a hashable dict or list subclass, or the innermost leaf written
    unhashable (_Walk) along tuples, frozensets and records' fields."""
    if isinstance(x, (dict, list)):
        return x, []
    if type(x) in (tuple, frozenset):
        inside = enumerate(x) if type(x) is tuple else ((None, e) for e in x)
    else:
        data = encode(x)
        if data is None or not data[0] & UNHASHABLE:
            return None
        kind = data[0] & ~UNHASHABLE
        inside = (((_Attribute(k), v) for k, v in _dataclass_fields(x).items())
                  if kind == DATACLASS else zip(map(_Attribute, type(x)._fields), x)
                  if kind == NAMEDTUPLE else ())
    for step, value in inside:
        found = _unkeyed(value)
        if found:
            return found[0], ([] if step is None else [step]) + found[1]
    return None if type(x) in (tuple, frozenset) else (x, [])


def _numpy_scalar(obj):
    """Whether obj is a numpy scalar (np.float64, np.bool_, np.str_...)."""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.generic)


def _why(obj):
    """A hint for a value refused for its class: a numpy scalar, or a
    record whose class cannot be imported back by its module:qualname path
    (a class defined inside a function), which reading it would need."""
    cls = type(obj)
    if _numpy_scalar(obj):
        return "a numpy scalar: store x.item(), the Python value, or a 0-d array"
    is_record = (isinstance(obj, enum.Enum) or (isinstance(obj, tuple) and hasattr(cls, "_fields"))
                 or (dataclasses.is_dataclass(obj) and not isinstance(obj, type)))
    if not is_record or _importable(cls):
        return ""
    return (f"its class is not importable as {class_path(cls)!r}, which reading it back "
            "needs: define the class at the top level of a module")


def _read_record(r, depth=0):
    if depth > RECORD_MAX_DEPTH:
        raise CorruptStoreError("damaged extension value: nested too deep")
    code = r.take(1)
    if code == b"N":
        return None
    if code in (b"T", b"F"):
        return code == b"T"
    if code == b"i":
        return int.from_bytes(r.counted(), "little", signed=True)
    if code == b"f":
        return struct.unpack("<d", r.take(8))[0]
    if code == b"s":
        return r.counted(True).decode("utf-8")
    if code == b"b":
        return bytes(r.counted(True))
    if code in (b"t", b"l", b"S", b"Z", b"L"):
        items = [_read_record(r, depth + 1) for _ in range(r.varint())]
        if code == b"L":
            from ._list import FrozenList
            return FrozenList(items)
        return {b"t": tuple, b"l": list, b"S": set, b"Z": frozenset}[code](items)
    if code in (b"d", b"D"):
        items = {_read_record(r, depth + 1): _read_record(r, depth + 1)
                 for _ in range(r.varint())}
        if code == b"D":
            from ._dict import FrozenDict
            return FrozenDict(items)
        return items
    if code == b"x":
        return decode(bytes(r.counted()))
    raise CorruptStoreError("damaged extension value: unknown record code")


def _hashable(obj):
    """Whether obj may be a key: hashable, and by value -- an object equal
    only to itself (eq=False), or hashed by its identity, could not stay
    itself through storing."""
    cls = type(obj)
    if ((cls.__eq__ is object.__eq__ or cls.__hash__ is object.__hash__)
            and not isinstance(obj, enum.Enum)):
        return False
    return _hashed(obj)


def _hashed(obj):
    """Whether hash(obj) works."""
    try:
        hash(obj)
        return True
    except TypeError:
        return False
    except RecursionError:              # records nested past what hash() can walk
        raise _too_deep() from None


# How a pickle of one global ends (STACK_GLOBAL, MEMOIZE, STOP): a class, a
# function, or an object whose __reduce__ gives its name (Ellipsis).
_GLOBAL_TAIL = b"\x93\x94."


def _by_reference(obj, data):
    """Whether obj, equal only to itself (compared and hashed by identity),
    is pickled (data) as a reference that unpickling resolves to obj itself:
    then it stays itself through storing, and is a key.  The pickle is read
    back only when it is a class's (by name; type(None) as type(None)) or
    names one global: cheap, and no code of the object's runs."""
    return ((isinstance(obj, type) or data.endswith(_GLOBAL_TAIL)) and _hashed(obj)
            and pickle.loads(data) is obj)


def _object(kind, cls, fields, obj, walk=None, depth=0):
    """A record of obj's fields; walk: see _Walk (obj met again inside is
    a cycle); depth, the number of records and containers around it (a
    record inside counts as RECORD_LEVELS containers: a chain of records
    nested deeper than Python's stack allows is refused, not a
    RecursionError; the outermost one's data starts at 0, as it always
    did)."""
    if depth >= RECORD_MAX_DEPTH:
        raise _too_deep()
    walk = _Walk() if walk is None else walk
    if id(obj) in walk.ids:
        raise CycleError("cowstore cannot store a self-referencing structure inside a "
                         "dataclass, namedtuple or registered class")
    walk.ids.add(id(obj))
    outer_lossy, walk.lossy = walk.lossy, False
    try:
        data = _counted(class_path(cls).encode()) + _record(
            fields, depth + RECORD_LEVELS if depth else 0, walk)
    except _Unstorable as e:            # name the field: .name, not ['name'] or [1]
        if kind == ENUM:
            e.steps.insert(0, _Attribute("value"))
        elif kind in (DATACLASS, NAMEDTUPLE) and e.steps:
            e.steps[0] = _Attribute(e.steps[0] if kind == DATACLASS else cls._fields[e.steps[0]])
        raise
    finally:
        walk.ids.discard(id(obj))
    hashable = _hashable(obj) and (not walk.lossy or _keeps_hash(obj, bytes([kind]) + data))
    walk.lossy = outer_lossy
    return bytes([kind | (0 if hashable else UNHASHABLE)]) + data


def _keeps_hash(obj, data):
    """Whether obj, written as data, reads back equal to it and hashing
    alike, as a key must (read back from a file, it is the key)."""
    try:
        back = decode(data)
        return back == obj and hash(back) == hash(obj)
    except TypeError:                   # what reads back is unhashable
        return False


_UNSET = object()


def _dataclass_fields(obj):
    """Its fields (an init=False one never set left out, as copy leaves it),
    then any other attribute its __dict__ holds (set by __post_init__)."""
    fields = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name, _UNSET)
        if value is not _UNSET:
            fields[f.name] = value
    for name, value in getattr(obj, "__dict__", {}).items():
        fields.setdefault(name, value)
    return fields


_enum_members_checked = {}


def _enum_member_reads_back(obj):
    """Whether cls(value read back) gives obj back: a value not equal to
    itself once rebuilt (NaN), or an enum mixing in a data type, would not.
    Found once per member."""
    ok = _enum_members_checked.get(obj)
    if ok is None:
        cls = type(obj)
        try:
            back = _read_record(_Reader(_record(obj.value)))
            ok = getattr(cls, "_member_type_", object) is object and cls(back) is obj
        except MemoryError:             # not an answer to cache
            raise
        except Exception:
            ok = False
        _enum_members_checked[obj] = ok
    return ok


def _plain_namedtuple(obj):
    """Whether cls(*fields) gives obj back: the namedtuple's own __new__, no
    instance __dict__ (a subclass without __slots__ = ())."""
    cls = type(obj)
    base = next((c for c in cls.__mro__ if "_fields" in vars(c)), None)
    return base is not None and cls.__new__ is base.__new__ and not getattr(obj, "__dict__", None)


_dataclasses_checked = {}


def _dataclass_rebuilds(cls):
    """Whether cls.__new__(cls) makes an instance, as reading one back does:
    a __new__ of the class's own may want arguments.  Found once per class."""
    ok = _dataclasses_checked.get(cls)
    if ok is None:
        try:
            ok = isinstance(cls.__new__(cls), cls)
        except MemoryError:             # not an answer to cache
            raise
        except Exception:
            ok = False
        _dataclasses_checked[cls] = ok
    return ok


def _new_dataclass(cls, fields):
    """A fresh instance with the stored fields set; __init__ and
    __post_init__ are not called (as copy and pickle do)."""
    obj = cls.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


def _encode_object(obj, walk, depth):
    cls = type(obj)
    entry = _registry.get(cls)
    if entry is not None:
        return _object(USER, cls, entry[1](obj), obj, walk, depth)
    if isinstance(obj, _MIXINS) and not (isinstance(obj, tuple) and hasattr(cls, "_fields")):
        return None                     # an IntEnum, a str subclass...: see _MIXINS
    if isinstance(obj, enum.Enum) and _enum_member_reads_back(obj) and _importable(cls):
        return _object(ENUM, cls, obj.value, obj, walk, depth)
    if isinstance(obj, tuple) and _plain_namedtuple(obj) and _importable(cls):
        return _object(NAMEDTUPLE, cls, tuple(obj), obj, walk, depth)
    if (dataclasses.is_dataclass(obj) and not isinstance(obj, type) and _importable(cls)
            and _dataclass_rebuilds(cls)):
        return _object(DATACLASS, cls, _dataclass_fields(obj), obj, walk, depth)
    if _fallback[0] is not None and not isinstance(obj, numbers.Number) and not _numpy_scalar(obj):
        try:                            # (a number, np.int64(1) or np.True_, may equal an int)
            data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            raise
        except Exception:
            return None
        head = PICKLE | (0 if _hashable(obj) or _by_reference(obj, data) else UNHASHABLE)
        return bytes([head]) + _counted(class_path(cls).encode()) + data
    return None


def _checked_class(path, kind):
    """The class path names, if it is one of kind's (a damaged or hostile
    file must not get any other callable called)."""
    try:
        cls = resolve(path)
    except (ImportError, ValueError) as e:
        raise CorruptStoreError(f"cannot import class {path!r} named in the store "
                                f"(a missing module, or a damaged file): {e}") from None
    ok = isinstance(cls, type) and (
        (kind == ENUM and issubclass(cls, enum.Enum))
        or (kind == NAMEDTUPLE and issubclass(cls, tuple) and hasattr(cls, "_fields"))
        or (kind == DATACLASS and dataclasses.is_dataclass(cls)))
    if not ok:
        raise CorruptStoreError(f"damaged extension value: {path!r} is no class of its kind")
    return cls


def _decode_object(r, kind):
    path = r.counted().decode()
    if kind == PICKLE:
        if _fallback[0] is None:
            raise CorruptStoreError("a pickled leaf: call cowstore.set_fallback(pickle) to "
                                    "read it (unpickling runs code: only for trusted files)")
        try:
            return pickle.loads(r.take(len(r.data) - r.pos))
        except (ImportError, AttributeError) as e:    # as _checked_class says it
            raise CorruptStoreError(f"cannot import class {path!r} of a pickled leaf "
                                    f"(a missing module, or a damaged file): {e}") from None
    fields = _read_record(r)
    r.end()
    if kind == USER:
        entry = _registry.get(_registered_paths.get(path))
        if entry is None:
            raise CorruptStoreError(f"class {path!r} is not registered with cowstore.register "
                                    "in this process")
        return entry[2](fields)
    cls = _checked_class(path, kind)
    if kind == ENUM:
        return cls(fields)
    if kind == NAMEDTUPLE:
        return cls(*fields)
    if not isinstance(fields, dict):
        raise CorruptStoreError("damaged extension value: dataclass fields")
    return _new_dataclass(cls, fields)


# ---- the entry points ------------------------------------------------------

def encode(obj):
    """The extension bytes of obj, or None when cowstore cannot store it
    (refusal(obj) then says what inside it is to blame)."""
    try:
        return _encode(obj)
    except _Unstorable:
        return None


def _encode(obj, walk=None, depth=0):
    """encode, a record refused by raising _Unstorable (its steps say where);
    walk: see _Walk."""
    t = type(obj)
    if t is _dt.datetime:
        return _encode_datetime(obj)
    if t is _dt.date:
        return struct.pack("<BI", DATE, obj.toordinal())
    if t is _dt.time:
        return _encode_time(obj)
    if t is _dt.timedelta:
        return struct.pack("<BiII", TIMEDELTA, obj.days, obj.seconds, obj.microseconds)
    if t is decimal.Decimal:
        data = _encode_decimal(obj)
        return data if _decimal_reads_back(obj, data) else None
    if t is fractions.Fraction:
        return bytes([FRACTION]) + _ratio_key(obj)
    if t is complex:
        return struct.pack("<Bdd", COMPLEX, obj.real, obj.imag)
    if t is uuid.UUID:
        return bytes([UUID]) + obj.bytes
    return _encode_object(obj, walk, depth)


def _decode_simple(r, subtype):
    if subtype in (DATETIME, TIME):
        return _decode_temporal(r, subtype)
    if subtype == DATE:
        return _dt.date.fromordinal(struct.unpack("<I", r.take(4))[0])
    if subtype == TIMEDELTA:
        days, secs, micros = struct.unpack("<iII", r.take(12))
        if secs >= 86400 or micros >= 1_000_000:
            raise CorruptStoreError("damaged extension value: timedelta fields")
        return _dt.timedelta(days, secs, micros)
    if subtype == DECIMAL:
        return _decode_decimal(r)
    if subtype == FRACTION:
        return _decode_fraction(r)
    if subtype == COMPLEX:
        return complex(*struct.unpack("<dd", r.take(16)))
    if subtype == UUID:
        return uuid.UUID(bytes=bytes(r.take(16)))
    raise CorruptStoreError(f"damaged extension value: unknown subtype {subtype}")


# What damaged bytes can make the decoders raise; all become CorruptStoreError
# (a missing module or class stays an ImportError: the file may be sound).
_DAMAGE = (ValueError, OverflowError, struct.error, decimal.InvalidOperation, KeyError,
           IndexError, EOFError, RecursionError, pickle.UnpicklingError)


def decode(data):
    """The object extension bytes describe (a fresh one each time)."""
    try:
        r = _Reader(data)
        subtype = r.byte()
        if subtype & ~UNHASHABLE in OBJECT_KINDS:
            return _decode_object(r, subtype & ~UNHASHABLE)
        value = _decode_simple(r, subtype)
        r.end()
        return value
    except CorruptStoreError:
        raise
    except _DAMAGE as e:
        raise CorruptStoreError(f"damaged extension value: {type(e).__name__}: {e}") from None


# ---- the public hooks ------------------------------------------------------

def register(cls, to_data, from_data):
    """Store instances of cls (exactly that class) as to_data(obj), any
    storable data, and read them back as from_data(data), as copyreg does for
    pickle.  The class is recorded by its import path "module:qualname"; a
    process reading it must have registered it too, else reading raises
    CorruptStoreError naming the path."""
    if not isinstance(cls, type):
        raise TypeError("cowstore.register needs a class")
    if not callable(to_data) or not callable(from_data):
        raise TypeError("cowstore.register needs two callables")
    if cls in _NATIVE:
        raise TypeError(f"cowstore stores {cls.__name__} itself: it cannot be registered")
    if issubclass(cls, (dict, list)):   # converted before any registration is looked up
        base = "dict" if issubclass(cls, dict) else "list"
        raise TypeError(f"cowstore stores a {base} subclass ({cls.__name__}) as a plain {base}: "
                        "it cannot be registered (register a class that holds one instead)")
    _registry[cls] = (class_path(cls), to_data, from_data)
    _registered_paths[class_path(cls)] = cls


def unregister(cls):
    """Forgets a class given to register (KeyError if it was not)."""
    path = _registry.pop(cls)[0]
    _registered_paths.pop(path, None)


def set_fallback(fallback):
    """fallback=pickle: store any otherwise unstorable object that pickles as
    an immutable leaf (reading gives a fresh unpickled object); None (the
    default): such objects raise UnsupportedTypeError.  Returns the previous
    setting."""
    if fallback is not None and fallback is not pickle:
        raise ValueError("cowstore.set_fallback takes pickle or None")
    previous, _fallback[0] = _fallback[0], fallback
    return previous


# ---- JSON forms (cowstore export / get) ------------------------------------

_NO_FORM = object()


def _duration(td):
    """ISO 8601 duration of a timedelta: "P1DT3600.5S", "P-1DT86399S"."""
    secs = f"{td.seconds}.{td.microseconds:06d}".rstrip("0").rstrip(".")
    return f"P{td.days}DT{secs}S"


def json_form(obj):
    """What a leaf of an extension type is written as in JSON (see
    docs/semantics.md), or _NO_FORM."""
    t = type(obj)
    if t in (_dt.datetime, _dt.date, _dt.time):
        return obj.isoformat()
    if t is _dt.timedelta:
        return _duration(obj)
    if t in (decimal.Decimal, fractions.Fraction, uuid.UUID):
        return str(obj)
    if t is complex:
        return [obj.real, obj.imag]
    entry = _registry.get(t)
    if entry is not None:
        return entry[1](obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _dataclass_fields(obj)
    return _NO_FORM


def json_key(obj):
    """The JSON text of a dict key of an extension type, or None.  A form
    that is a JSON scalar but no string (an enum member's value 1, 2.5,
    True, None) is written as json.dumps writes such a key: "1", "2.5",
    "true", "null"; containers (a dataclass's fields) are no key."""
    form = json_form(obj)
    if isinstance(form, str):
        return form
    if form is None or type(form) in (bool, int, float):
        return json.dumps(form)
    return None
