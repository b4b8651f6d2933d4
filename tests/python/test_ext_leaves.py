"""Extension leaves (docs/semantics.md, "Values cowstore stores"): datetime,
date, time, timedelta, Decimal, Fraction, complex, UUID, enum members,
namedtuples, dataclasses, registered classes and the pickle fallback, through
freeze/thaw, copy, pickling, stores (read in a fresh process), diff and JSON."""
import collections
import contextlib
import copy
import dataclasses
import datetime as dt
import enum
import gc
import io
import json
import pickle
import subprocess
import sys
import uuid
import zoneinfo
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

import cowstore
from cowstore._ext import encode
from cowstore._jsonout import JsonOutputError, JsonWriter

sys.path.insert(0, str(Path(__file__).parent))
import _ext_types  # noqa: E402
from _ext_types import (Color, FrozenRow, Money, Opaque, Point, Row,  # noqa: E402
                        money_from_data, money_to_data)

ZONES = ["UTC", "America/New_York", "Europe/Paris", "Asia/Kolkata", "Australia/Lord_Howe"]

timezones = st.one_of(
    st.none(),
    st.just(dt.timezone.utc),
    st.builds(dt.timezone, st.timedeltas(min_value=dt.timedelta(hours=-23, minutes=-59),
                                        max_value=dt.timedelta(hours=23, minutes=59))),
    st.sampled_from(ZONES).map(zoneinfo.ZoneInfo),
)
datetimes = st.datetimes(timezones=timezones, allow_imaginary=False)
decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.sampled_from([Decimal("NaN"), Decimal("-NaN7"), Decimal("sNaN"), Decimal("-0"),
                     Decimal("0E+3000"), Decimal("1E+5000"), Decimal("1.10"), Decimal("1.1")]),
)
fraction_values = st.fractions(max_denominator=10**12) | st.builds(Fraction, st.integers())
complexes = st.complex_numbers(allow_nan=False)
leaves = st.one_of(datetimes, st.dates(), st.times(timezones=st.none() | st.just(dt.timezone.utc)),
                   st.timedeltas(), decimals, fraction_values, complexes, st.uuids())


def same(a, b):
    """Type, text and (for times) zone and fold are kept exactly."""
    assert type(a) is type(b), (a, b)
    assert repr(a) == repr(b), (a, b)
    if isinstance(a, (dt.datetime, dt.time)):
        assert a.tzinfo == b.tzinfo and a.fold == b.fold


@given(leaves)
def test_freeze_thaw_round_trip(x):
    same(cowstore.thaw(cowstore.freeze([x]))[0], x)
    same(cowstore.freeze({"k": x})["k"], x)


@given(st.lists(leaves, max_size=8))
def test_copy_and_pickle_round_trip(xs):
    frozen = cowstore.freeze(xs)
    for back in (copy.copy(frozen), copy.deepcopy(frozen),
                 pickle.loads(pickle.dumps(frozen)), cowstore.CowList(xs)):
        for a, b in zip(back, xs):
            same(a, b)


@given(datetimes)
def test_datetime_fits_the_value(x):
    if x.tzinfo is None or type(x.tzinfo) is dt.timezone:
        assert len(encode(x)) <= 14 or x.tzinfo.tzname(None) != dt.timezone(
            x.utcoffset()).tzname(None)


def test_small_decimals_are_inline():
    for text in ["1", "19.99", "-0.5", "1234567.89", "0.1"]:
        assert len(encode(Decimal(text))) <= 14, text


def python_dict(keys):
    d = {}
    for i, k in enumerate(keys):
        d[k] = i
    return d


def cow_dict(keys):
    d = cowstore.CowDict()
    for i, k in enumerate(keys):
        d[k] = i
    return d


hashable_leaves = leaves.filter(lambda x: not (isinstance(x, Decimal) and x.is_nan()))
numbers = st.one_of(st.integers(-3, 3), st.sampled_from([0.5, 1.0, -2.0, 0.1, 2.0**70]),
                    st.sampled_from([Decimal(1), Decimal("1.0"), Decimal("0.5"), Decimal("0.1"),
                                     Decimal("-2"), Decimal(2**70), Decimal("0.10")]),
                    st.sampled_from([Fraction(1), Fraction(1, 2), Fraction(1, 10),
                                     Fraction(2**70), Fraction(-2)]),
                    st.sampled_from([complex(1, 0), complex(0.5, 0), complex(1, 1),
                                     complex(-2, -0.0)]),
                    st.booleans())


@given(st.lists(st.one_of(numbers, hashable_leaves), max_size=12))
def test_keys_collide_as_in_dict(keys):
    expect = python_dict(keys)
    got = cow_dict(keys)
    assert len(got) == len(expect)
    for k, v in expect.items():
        assert got[k] == v
    frozen = cowstore.freeze(expect)
    assert len(frozen) == len(expect)
    for k in keys:
        assert (k in frozen) == (k in expect)


def test_numbers_equal_in_python_are_one_key():
    keys = [1, 1.0, True, Decimal(1), Decimal("1.000"), Fraction(1), complex(1, 0)]
    d = cow_dict(keys)
    assert len(d) == 1 and d[1] == len(keys) - 1
    assert cowstore.freeze({Decimal("0.1"): "a"})[Fraction(1, 10)] == "a"
    assert 0.1 not in cowstore.freeze({Decimal("0.1"): "a"})
    assert cowstore.freeze({Decimal("0.5"): "a"})[0.5] == "a"
    assert cowstore.freeze({Decimal(2**70): "a"})[2**70] == "a"


def test_datetimes_compare_as_python():
    utc = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)
    paris = utc.astimezone(zoneinfo.ZoneInfo("Europe/Paris"))
    fixed = utc.astimezone(dt.timezone(dt.timedelta(hours=-3)))
    d = cowstore.freeze({utc: "noon"})
    assert d[paris] == d[fixed] == "noon"
    assert dt.datetime(2024, 1, 1, 12) not in d           # naive != aware
    assert cowstore.freeze([utc]) == cowstore.freeze([paris])
    assert dt.date(2024, 1, 1) not in cowstore.freeze({dt.datetime(2024, 1, 1): 1})


def test_nan_leaves_are_refused_as_keys_as_float_nan_is():
    for nan in (Decimal("NaN"), complex(float("nan"), 1)):
        with pytest.raises(cowstore.CowValueError):
            cowstore.freeze({nan: 1})
        assert nan not in cowstore.freeze({1: 1})
        assert cowstore.freeze([nan])[0] is not None


def test_unhashable_values_are_refused_as_keys():
    with pytest.raises(TypeError):
        cowstore.freeze({Decimal("sNaN"): 1})
    with pytest.raises(TypeError):
        cowstore.freeze({Row(1): 1})


# ---- classes by reference ----------------------------------------------------

@pytest.fixture
def pickle_fallback():
    """The pickle fallback on for the test, the setting before restored after."""
    previous = cowstore.set_fallback(pickle)
    yield
    cowstore.set_fallback(previous)


@pytest.fixture
def registered():
    cowstore.register(Money, money_to_data, money_from_data)
    yield
    cowstore.unregister(Money)


def objects():
    return {"color": Color.RED, "blue": Color.BLUE, "point": Point(1, Decimal("2.5")),
            "frozen": FrozenRow(1, dt.date(2020, 1, 2)), "row": Row(2, ["a", "b"]),
            "money": Money(Decimal("9.99"), "EUR"), Color.RED: "key", Point(1, 2): "pk",
            FrozenRow(3): "fk"}


def test_class_records_round_trip(registered):
    data = objects()
    for back in (cowstore.thaw(cowstore.freeze(data)), copy.deepcopy(cowstore.freeze(data)),
                 pickle.loads(pickle.dumps(cowstore.freeze(data)))):
        assert dict(back) == data
        assert back["color"] is Color.RED
        assert type(back["point"]) is Point
    frozen = cowstore.freeze(data)
    assert frozen[Color.RED] == "key" and frozen[Point(1, 2)] == "pk"
    assert frozen[FrozenRow(3)] == "fk"


def test_dataclass_reads_back_a_fresh_instance():
    d = cowstore.CowDict(row=Row(1, ["a"]))
    row = d["row"]
    row.tags.append("b")
    assert d["row"].tags == ["a"]            # not a live view: write it back to change it
    assert d["row"] is not d["row"]
    d["row"] = row
    assert d["row"].tags == ["a", "b"]


def test_register_and_unregister(registered):
    with pytest.raises(TypeError):
        cowstore.register(Money(1, "x"), money_to_data, money_from_data)
    # A dict or list subclass is stored as the plain container, in records
    # too, before any registration is looked up: registering one would not work.
    for cls in (collections.OrderedDict, type("Route", (list,), {})):
        with pytest.raises(TypeError, match="as a plain (dict|list): it cannot be registered"):
            cowstore.register(cls, list, cls)
    assert cowstore.thaw(cowstore.freeze([Money(1, "EUR")])) == [Money(1, "EUR")]


def test_a_pickled_leaf_whose_class_is_gone_reads_as_a_clear_error(monkeypatch, pickle_fallback):
    frozen = cowstore.freeze([Opaque(1)])
    monkeypatch.delattr(_ext_types, "Opaque")        # the reader lacks the class
    with pytest.raises(cowstore.CorruptStoreError, match="cannot import class "
                       "'_ext_types:Opaque' of a pickled leaf"):
        frozen[0]


def test_pickle_fallback_is_opt_in():
    with pytest.raises(cowstore.UnsupportedTypeError, match=r"Opaque.*root\[0\]"):
        cowstore.freeze([Opaque(1)])
    previous = cowstore.set_fallback(pickle)
    try:
        frozen = cowstore.freeze([Opaque([1])])
        leaf = frozen[0]
        assert leaf == Opaque([1]) and leaf is not frozen[0]
        leaf.x.append(2)                     # a fresh object: nothing written back
        assert frozen[0] == Opaque([1])
        with pytest.raises(TypeError):
            cowstore.freeze({Opaque(1): 1})
    finally:
        cowstore.set_fallback(previous)
    with pytest.raises(ValueError):
        cowstore.set_fallback(json)


def test_unsupported_types_still_name_type_and_path():
    with pytest.raises(cowstore.UnsupportedTypeError, match=r"'object' \(at root\['a'\]\[1\]\)"):
        cowstore.freeze({"a": [1, object()]})
    local = type("Local", (), {})
    with pytest.raises(cowstore.UnsupportedTypeError) as info:
        cowstore.freeze([local()])
    assert "importable" not in str(info.value)      # not a record: no hint


def test_a_record_of_a_class_defined_in_a_function_says_why_it_is_refused():
    @dataclasses.dataclass
    class Local:
        x: int
    Pair = collections.namedtuple("Pair", "a b")        # qualname Pair: not in this module
    for value, path in [([Local(1)], r"root\[0\]"), ({"k": [Pair(1, 2)]}, r"root\['k'\]\[0\]"),
                        ([Row(1, [Local(2)])], r"root\[0\]\.tags\[0\]")]:
        with pytest.raises(cowstore.UnsupportedTypeError,
                           match=path + r"\): its class is not importable as '.*', which reading"):
            cowstore.freeze(value)


def test_a_record_refused_for_a_field_names_the_field_and_its_type():
    # The record is storable; what one of its fields holds is not: the
    # error names that value's type and path, not the record's type.
    cases = [
        ([Row("a", [1, object()])], r"'object' \(at root\[0\]\.tags\[1\]\)"),
        ({"p": Point(1, {"k": object})}, r"'type' \(at root\['p'\]\.y\['k'\]\)"),
        ([FrozenRow(1, Point(2, Opaque(3)))], r"'Opaque' \(at root\[0\]\.note\.y\)"),
    ]
    for value, message in cases:
        for convert in (cowstore.freeze, lambda v: cowstore.CowList([v])):
            with pytest.raises(cowstore.UnsupportedTypeError, match=message.replace(
                    "at root", "at root" if convert is cowstore.freeze else r"at root\[0\]")):
                convert(value)
    d = cowstore.CowDict()
    with pytest.raises(cowstore.UnsupportedTypeError, match=r"'object' \(at root\.y\)"):
        d["p"] = Point(1, object())
    assert Point(1, object()) not in d and d.get(Point(1, object())) is None


# ---- diff, JSON, stores --------------------------------------------------------

def test_diff_sees_changed_leaves():
    a = cowstore.freeze({"at": dt.date(2020, 1, 1), "p": Decimal("1.10")})
    b = cowstore.freeze({"at": dt.date(2020, 1, 2), "p": Decimal("1.10")})
    assert [(c.path, c.old, c.new) for c in cowstore.diff(a, b)] == [
        (("at",), dt.date(2020, 1, 1), dt.date(2020, 1, 2))]


def test_json_forms():
    value = cowstore.freeze({
        "at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "d": dt.date(2024, 1, 2),
        "t": dt.time(1, 2), "td": dt.timedelta(days=1, seconds=3600, microseconds=500000),
        "dec": Decimal("1.10"), "fr": Fraction(1, 3), "c": 1 + 2j, "u": uuid.UUID(int=1),
        "color": Color.BLUE, "p": Point(1, 2), "row": FrozenRow(1),
        "keys": {dt.date(2020, 1, 1): 1, Decimal("2.5"): 2}})
    out = io.StringIO()
    JsonWriter(out).write(value)
    assert json.loads(out.getvalue()) == {
        "at": "2024-01-02T03:04:05+00:00", "d": "2024-01-02", "t": "01:02:00",
        "td": "P1DT3600.5S", "dec": "1.10", "fr": "1/3", "c": [1.0, 2.0],
        "u": "00000000-0000-0000-0000-000000000001", "color": "blue", "p": [1, 2],
        "row": {"id": 1, "note": None}, "keys": {"2020-01-01": 1, "2.5": 2}}


READER = """
import sys, pickle
sys.path.insert(0, {here!r})
import cowstore, _ext_types
cowstore.register(_ext_types.Money, _ext_types.money_to_data, _ext_types.money_from_data)
store = cowstore.open({path!r})
sys.stdout.buffer.write(pickle.dumps(cowstore.thaw(store["state"])))
"""


def test_store_round_trip_in_a_fresh_process(tmp_path, registered):
    state = dict(objects(), leaves=[
        dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
        dt.timedelta(days=-1), Decimal("-sNaN3"), Fraction(2**80, 3), complex(1, -0.0),
        uuid.UUID(int=7), dt.time(23, 59, tzinfo=dt.timezone(dt.timedelta(hours=5), "X"))])
    path = str(tmp_path / "s.cow")
    store = cowstore.open(path)
    store["state"] = state
    store.close()
    out = subprocess.run([sys.executable, "-c",
                          READER.format(here=str(Path(__file__).parent), path=path)],
                         capture_output=True, check=True).stdout
    back = pickle.loads(out)
    leaves = back.pop("leaves")
    expect = state.pop("leaves")
    assert back == state
    for a, b in zip(leaves, expect):
        same(a, b)


def test_stored_leaves_are_keys(tmp_path):
    store = cowstore.open(str(tmp_path / "k.cow"))
    store["k"] = {Decimal("0.5"): 1, dt.date(2020, 1, 1): 2, uuid.UUID(int=3): 3}
    k = store["k"]
    assert k[0.5] == k[Fraction(1, 2)] == 1 and k[dt.date(2020, 1, 1)] == 2
    assert k[uuid.UUID(int=3)] == 3


@pytest.mark.parametrize("data", [
    b"\x01\x00", b"\x02\x01", b"\x03" + b"\xff" * 8, b"\x05\x09", b"\x05\x04\x01\x05\x01\x01",
    b"\x06\x01", b"\x07" + b"\x00" * 15, b"\x08\x00", b"\x10\x05abc", b"\x11\x03a:b\x00",
    b"\x63", b"\x04" + b"\xff" * 12, b"\x01" + b"\xff" * 8 + b"\x00" * 5 + b"\xff",
    b"\x14\x01x\x80\x04garbage", b"\x12\x04os:pN", b"\x10\x09os:systemsx",
    b"\x10\x09os:systems\x04echo", b"\x11\x0bno_such:Cls\x74\x00", b"\x13\x03a:bN",
])
def test_damaged_bytes_are_corrupt_store_errors(data):
    with pytest.raises(cowstore.CorruptStoreError):
        cowstore._ext.decode(data)


def test_pickled_leaves_read_only_with_the_fallback_on():
    previous = cowstore.set_fallback(pickle)
    try:
        data = encode(Opaque(1))
    finally:
        cowstore.set_fallback(previous)
    with pytest.raises(cowstore.CorruptStoreError, match="set_fallback"):
        cowstore._ext.decode(data)


def test_damaged_decimal_payload_is_corrupt():
    with pytest.raises(cowstore.CorruptStoreError):
        cowstore._ext.decode(encode(Decimal("1.5")) + b"\x00")


def test_int_enum_members_are_not_records():
    """IntEnum members equal plain ints; a record by class path could not."""
    import enum

    class Level(enum.IntEnum):
        LOW = 1

    with pytest.raises(cowstore.UnsupportedTypeError):
        cowstore.freeze([Level.LOW])
    assert Level.LOW in cowstore.freeze([1])     # still found as the int it equals


@pytest.mark.parametrize("damage", ["subtype", "length", "payload"])
def test_damaged_leaf_in_a_store_file_is_corrupt(tmp_path, damage):
    """A leaf's bytes damaged inside a real store file: CorruptStoreError on
    read, never a crash or a wrong value."""
    leaf = dt.timedelta(days=12345, seconds=678, microseconds=91011)
    data = encode(leaf)
    path = tmp_path / "d.cow"
    store = cowstore.open(str(path))
    store["x"] = [leaf]
    store.close()
    blob = bytearray(path.read_bytes())
    at = blob.find(data)
    assert at > 0 and blob.find(data, at + 1) < 0
    if damage == "subtype":
        blob[at] = 0x63                     # no such subtype
    elif damage == "length":
        blob[at - 1] = 15                   # the inline length byte: past 14
    else:
        blob[at + 5:at + 9] = b"\xff\xff\xff\xff"   # seconds beyond a day
    path.write_bytes(bytes(blob))
    store = cowstore.open(str(path), readonly=True)
    with pytest.raises(cowstore.CorruptStoreError):
        store["x"][0]
    store.close()


def test_cli_get_and_export_write_json_forms(tmp_path):
    path = str(tmp_path / "c.cow")
    store = cowstore.open(path)
    store["r"] = [{"at": dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc),
                   "p": Decimal("1.10"), "id": uuid.UUID(int=1)}]
    store.close()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "cowstore", *args], capture_output=True,
                              text=True, check=True).stdout

    assert json.loads(cli("get", path, "r/0/at")) == "2024-01-02T00:00:00+00:00"
    assert json.loads(cli("export", path, "r", "-")) == [
        {"at": "2024-01-02T00:00:00+00:00", "p": "1.10",
         "id": "00000000-0000-0000-0000-000000000001"}]


class _Dropper:
    """A registered class whose decoder drops the container being read."""

    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, _Dropper) and self.n == other.n

    __hash__ = None


@pytest.mark.parametrize("shape", ["tuple", "list", "dict", "small tuple"])
@pytest.mark.parametrize("read", ["getitem", "thaw", "reduce"])
def test_a_decoder_that_drops_the_container_being_read_does_not_break_the_read(shape, read):
    holder = {}

    def from_data(n):
        d = holder.pop("d", None)
        if d is not None:                   # drop the only reference, then reuse the memory
            d["v"] = None
            del d
            gc.collect()
            holder["junk"] = [bytes(64) for _ in range(2000)]
        return _Dropper(n)

    cowstore.register(_Dropper, lambda x: x.n, from_data)
    try:
        items = [_Dropper(0)] + ["s" * 40 + str(i) for i in range(2 if shape == "small tuple"
                                                                  else 200)]
        value = {"tuple": tuple(items), "small tuple": tuple(items), "list": items,
                 "dict": {i: x for i, x in enumerate(items)}}[shape]
        holder["d"] = cowstore.CowDict({"v": value})
        d = holder["d"]
        got = (d["v"] if read == "getitem" else cowstore.thaw(d)["v"] if read == "thaw"
               else d.__reduce__()[1][0]["v"])
        del d
        assert got == value
    finally:
        cowstore.unregister(_Dropper)


class _Changer:
    """A registered class whose encoder changes the container being stored."""

    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, _Changer) and self.n == other.n

    def __hash__(self):
        return hash(self.n)


@contextlib.contextmanager
def _encoder_that_clears(container):
    """_Changer registered with a to_data that clears container, then
    reuses the memory that freed."""
    junk = []

    def to_data(x):
        container.clear()
        gc.collect()
        junk.append([bytes(64) for _ in range(2000)])
        return x.n

    cowstore.register(_Changer, to_data, _Changer)
    try:
        yield
    finally:
        cowstore.unregister(_Changer)


@pytest.mark.parametrize("where", ["list item", "dict key", "dict value", "set element"])
def test_an_encoder_that_resizes_the_container_being_converted_is_refused(where):
    """Python code run by a conversion (here a registered class's to_data)
    that resizes the list, dict or set being converted gets a RuntimeError,
    as dict iteration does; before, conversion went on with items it had
    borrowed, freed by then, and crashed."""
    filler = ["s" * 40 + str(i) for i in range(300)]
    src = {"list item": [_Changer(0)] + filler, "dict key": {_Changer(0): filler},
           "dict value": {"a": _Changer(0), **{s: s for s in filler}},
           "set element": {_Changer(0), *filler}}[where]
    with _encoder_that_clears(src):
        with pytest.raises(RuntimeError, match="changed size during conversion"):
            cowstore.CowDict()["v"] = src


@pytest.mark.parametrize("how", ["insert", "slice", "extend at a slice"])
def test_an_encoder_that_empties_the_list_being_written_leaves_it_as_list_would(how):
    """insert and slice assignment convert the new items after computing
    where they go; if that conversion empties the list, the place is clamped
    to the new length, as list_ass_slice clamps it (this read past the end
    of the vector before)."""
    target = cowstore.CowList(range(40))
    with _encoder_that_clears(target):
        if how == "insert":
            target.insert(30, _Changer(1))
        elif how == "slice":
            target[5:8] = [_Changer(1)]
        else:
            target[30:30] = [_Changer(1), _Changer(2)]
        assert list(target) == ([_Changer(1)] if how != "extend at a slice"
                                else [_Changer(1), _Changer(2)])


def _nested_lists(depth):
    x = 0
    for _ in range(depth):
        x = [x]
    return x


@pytest.mark.parametrize("value", [
    Decimal("NaN" + "9" * 22), Decimal("-sNaN" + "1" * 27), Decimal(10 ** 5000),
    Decimal("9" * 4301), Decimal("0." + "9" * 4301), Decimal("-1.5E-1003"),
    _ext_types.Holder(cowstore.FrozenList([1])), _ext_types.Holder(cowstore.FrozenDict({1: 2})),
    _ext_types.Row({cowstore.FrozenList([1]): "x"}), _ext_types.Row(_nested_lists(199)),
    _ext_types.Loose(1),
], ids=repr)
def test_values_that_were_stored_and_then_unreadable_read_back_exactly(value):
    """Each of these was accepted and then failed every read (a reader's
    limit the writer did not share: varint bits, int's 4,300 digits; a
    frozen container in a record thawed into an unhashable key)."""
    for back in (cowstore.freeze([value])[0], cowstore.thaw(cowstore.freeze([value]))[0]):
        assert type(back) is type(value) and repr(back) == repr(value)


@pytest.mark.parametrize("value, error", [
    (_ext_types.NanEnum.N, cowstore.UnsupportedTypeError),
    (_ext_types.TupleEnum.A, cowstore.UnsupportedTypeError),
    (_ext_types.Parsed("1"), cowstore.UnsupportedTypeError),
    (_ext_types.NewWants(1), cowstore.UnsupportedTypeError),
    (_ext_types.Row(_nested_lists(201)), cowstore.CowOverflowError),
], ids=repr)
def test_values_that_would_not_read_back_are_refused_when_stored(value, error):
    """Stored before, then unreadable (an enum value not equal to itself once
    rebuilt, an enum mixing in tuple, a namedtuple or dataclass whose __new__
    takes other arguments, nesting past the reader's bound): now refused at
    once."""
    with pytest.raises(error):
        cowstore.freeze([value])


def test_a_cycle_inside_a_record_is_a_cycle_error():
    loop = []
    loop.append(loop)
    with pytest.raises(cowstore.CycleError):
        cowstore.freeze([Row(loop)])


def test_a_record_that_contains_itself_is_a_cycle_error():
    # Through a field, through the container holding it, or a registered
    # class whose data is the object itself: each raised RecursionError.
    row = Row(1)
    row.tags.append(row)
    outer = []
    outer.append(Row(2, outer))
    for value in ([row], {"h": _ext_types.Holder([row])}, outer):
        with pytest.raises(cowstore.CycleError):
            cowstore.freeze(value)
    cowstore.register(Money, lambda m: m, money_from_data)
    try:
        with pytest.raises(cowstore.CycleError):
            cowstore.CowList([Money(1, "EUR")])
    finally:
        cowstore.unregister(Money)
    shared = Row(3)                     # met twice, no cycle: stored
    assert cowstore.freeze([Row(4, [shared, shared])])[0] == Row(4, [shared, shared])


def test_a_namedtuple_subclass_with_attributes_is_refused_not_stripped():
    loose = _ext_types.Loose(1)
    loose.note = "kept by pickle"
    with pytest.raises(cowstore.UnsupportedTypeError):
        cowstore.freeze([loose])


def test_a_dataclass_keeps_attributes_set_outside_its_fields():
    back = cowstore.freeze([_ext_types.Derived(3)])[0]
    assert vars(back) == {"a": 3, "extra": 6}      # 'later' never set, as in the original


def test_sets_inside_a_record_compare_whatever_their_iteration_order():
    """A record is compared and hashed by its bytes: a set's elements are
    written in one canonical order, so equal sets give equal records (keys
    found from a process of another hash seed too)."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon"]
    a = Point(frozenset(words), 0)
    b = Point(frozenset(reversed(words)), 0)
    assert a == b and b in cowstore.CowSet([a]) and b in cowstore.CowList([a])
    assert cowstore.CowDict({a: 1})[b] == 1


def test_objects_equal_only_to_themselves_are_not_keys():
    """eq=False: two such objects are never equal, which a value rebuilt from
    bytes cannot keep; as keys they would collapse into one."""
    with pytest.raises(TypeError, match="unhashable"):
        cowstore.CowSet([_ext_types.ByIdentity(1), _ext_types.ByIdentity(1)])
    back = cowstore.freeze([_ext_types.ByIdentity(1)])[0]     # as values they store
    assert type(back) is _ext_types.ByIdentity and back.x == 1


def test_objects_hashed_by_identity_are_not_keys():
    """__hash__ = object.__hash__: each value read back hashes anew, so the
    hash of a FrozenSet holding one changed at every call (a set holding
    the FrozenSet did not find it)."""
    value = _ext_types.HashedByIdentity(1)
    with pytest.raises(TypeError, match="unhashable"):
        cowstore.FrozenSet([value])
    with pytest.raises(TypeError, match="unhashable"):
        cowstore.CowDict({value: 1})
    back = cowstore.freeze([value])[0]                  # as values they store
    assert type(back) is _ext_types.HashedByIdentity and back == value


def test_the_pickle_fallback_leaves_subclasses_of_builtins_refused():
    """With the fallback on, an IntEnum member or a str subclass is still not
    stored (pickled, it would be a key apart from the int or str it equals):
    as a key it finds the equal stored one."""
    class Num(enum.IntEnum):
        ONE = 1

    cowstore.set_fallback(pickle)
    try:
        d = cowstore.CowDict({1: "a", "s": "b"})
        d[Num.ONE] = "c"
        assert list(d.items()) == [(1, "c"), ("s", "b")]
        with pytest.raises(cowstore.UnsupportedTypeError):
            cowstore.freeze([Num.ONE])
    finally:
        cowstore.set_fallback(None)


def test_a_natively_stored_class_cannot_be_registered():
    with pytest.raises(TypeError, match="stores date itself"):
        cowstore.register(dt.date, str, str)


def test_dict_keys_inside_a_record_are_written_as_json_strings_as_elsewhere():
    keyed = {dt.date(2020, 1, 1): 1, Decimal("2.5"): 2}
    value = cowstore.freeze({"row": Row(1, [keyed]), "p": Point(keyed, 2),
                             "many": [Row(i, [keyed]) for i in range(600)]})
    out = io.StringIO()
    JsonWriter(out).write(value)
    written = {"2020-01-01": 1, "2.5": 2}
    assert json.loads(out.getvalue()) == {
        "row": {"id": 1, "tags": [written]}, "p": [written, 2],
        "many": [{"id": i, "tags": [written]} for i in range(600)]}


class _OwnZone(dt.tzinfo):
    def utcoffset(self, when):
        return dt.timedelta(hours=1)

    def dst(self, when):
        return dt.timedelta(0)


def test_a_datetime_refused_for_its_tzinfo_names_the_tzinfo():
    # The datetime type is stored; its zone is what is not: the error says
    # so, rather than "cannot store a value of type 'datetime.datetime'".
    cases = [
        ([dt.datetime(2024, 1, 1, tzinfo=_OwnZone())], r"'_OwnZone' \(at root\[0\]\.tzinfo\)"),
        ([dt.time(1, tzinfo=zoneinfo.ZoneInfo("UTC"))], r"'zoneinfo.ZoneInfo' \(at root\[0\]\.tzinfo\)"),
        ([Row(1, [dt.time(1, tzinfo=_OwnZone())])], r"'_OwnZone' \(at root\[0\]\.tags\[0\]\.tzinfo\)"),
    ]
    for value, message in cases:
        with pytest.raises(cowstore.UnsupportedTypeError, match=message):
            cowstore.freeze(value)
    probe = dt.datetime(2024, 1, 1, 1, tzinfo=_OwnZone())
    assert probe in cowstore.CowDict({dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc): 1})
    assert probe not in cowstore.CowSet([1]) and encode(probe) is None


def test_the_pickle_fallback_leaves_fraction_and_uuid_subclasses_refused(pickle_fallback):
    # They equal the Fraction, int or UUID they hold, as an IntEnum member
    # equals its int: pickled, each would be a key apart from that value.
    one, u = _ext_types.SubFraction(1), _ext_types.SubUUID(int=1)
    d = cowstore.CowDict({1: "a", uuid.UUID(int=1): "b"})
    d[one] = "c"
    d[u] = "d"
    assert list(d.items()) == [(1, "c"), (uuid.UUID(int=1), "d")] == list(
        {1: "a", uuid.UUID(int=1): "b", one: "c", u: "d"}.items())
    assert one in d and u in d and one in cowstore.CowSet([Fraction(1)])
    for value in (one, u):
        with pytest.raises(cowstore.UnsupportedTypeError):
            cowstore.freeze([value])


def test_a_probe_holding_a_lone_surrogate_is_looked_for_as_the_builtins_do():
    # Such a probe cannot be stored (its str is not UTF-8), but it may still
    # equal a stored value: a datetime whose zone name has one equals the
    # same instant in any zone.  Lookups answered UnicodeEncodeError.
    odd = dt.timezone(dt.timedelta(hours=1), "\udc80")
    probe = dt.datetime(2024, 1, 1, 1, tzinfo=odd)
    stored = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    for plain in ({stored: 1}, {stored}, [stored]):
        cow = {dict: cowstore.CowDict, set: cowstore.CowSet, list: cowstore.CowList}[
            type(plain)](plain)
        assert (probe in cow) is (probe in plain) is True
        assert (("\udc80", 1) in cow) is (("\udc80", 1) in plain) is False
    d = cowstore.CowDict({stored: 1})
    assert d.get(probe) == 1 and d.pop(("\udc80",), 2) == 2
    assert cowstore.CowList([stored, 1]).index(probe) == 0
    assert cowstore.CowList([stored, stored, 1]).count(probe) == 2
    with pytest.raises(UnicodeEncodeError):         # stored, it is refused
        cowstore.CowList([probe])


@pytest.mark.parametrize("make", [lambda tz: dt.datetime(2024, 1, 1, tzinfo=tz),
                                  lambda tz: dt.time(1, tzinfo=tz)])
@pytest.mark.parametrize("hours", [0, 1, -5])
def test_a_timezone_named_by_the_empty_string_keeps_its_name(make, hours):
    # timezone(offset, "") has tzname "", not the default "UTC+01:00": it
    # read back as timezone(offset), its name lost.
    off = dt.timedelta(hours=hours)
    for name in ("", "X", None):
        tz = dt.timezone(off) if name is None else dt.timezone(off, name)
        back = cowstore.CowList([make(tz)])[0]
        assert back.tzname() == make(tz).tzname() and back == make(tz)
        assert back.tzinfo.tzname(None) == tz.tzname(None)


def test_the_pickle_fallback_leaves_set_and_frozenset_subclasses_refused(pickle_fallback):
    # Pickled, a frozenset subclass was a key apart from the frozenset it
    # equals, and a set subclass a value unequal to the set it equals.
    fs, s = _ext_types.SubFrozenSet({1}), _ext_types.SubSet({1})
    d = cowstore.CowDict({frozenset({1}): "a"})
    d[fs] = "b"
    assert list(d.items()) == [(frozenset({1}), "b")] == list(
        {frozenset({1}): "a", fs: "b"}.items())
    assert fs in d and fs in cowstore.CowSet([frozenset({1})])
    for value in (fs, s):
        with pytest.raises(cowstore.UnsupportedTypeError):
            cowstore.CowList([value])


def test_the_pickle_fallback_leaves_numbers_refused(pickle_fallback):
    # Any number (numbers.Number: numpy's scalars, a user's) may equal an
    # int or float, which its pickle cannot: it made a key apart.
    one = _ext_types.Meters(1)
    d = cowstore.CowDict({1: "a"})
    d[one] = "b"
    assert list(d.items()) == [(1, "b")] == list({1: "a", one: "b"}.items())
    assert one in d and one in cowstore.CowList([1.0])
    with pytest.raises(cowstore.UnsupportedTypeError):
        cowstore.CowList([one])
    np = pytest.importorskip("numpy")
    with pytest.raises(cowstore.UnsupportedTypeError):
        cowstore.CowList([np.int64(1)])


def test_records_nested_past_the_limit_are_refused_not_a_recursion_error():
    # Each record restarted the depth count, so a chain of records ran out
    # of Python's stack (RecursionError) instead of meeting the limit.
    Holder = _ext_types.Holder
    for depth, wrap in [(67, Holder), (40, lambda x: Holder([x])), (60, lambda x: Point(1, x))]:
        x = 1
        for _ in range(depth):
            x = wrap(x)
        assert cowstore.thaw(cowstore.freeze([x])) == [x]
    for depth in (68, 150, 1000):
        x = 1
        for _ in range(depth):
            x = Holder(x)
        with pytest.raises(cowstore.CowOverflowError, match="nested more than 200"):
            cowstore.freeze([x])


def test_numpy_scalars_are_refused_with_a_hint_even_by_the_fallback(pickle_fallback):
    # np.True_ == True: pickled, it would be a key apart from True.
    np = pytest.importorskip("numpy")
    for fallback in (None, pickle):
        cowstore.set_fallback(fallback)
        for x in (np.bool_(True), np.float64(1.5), np.int32(2), np.datetime64("2020-01-01")):
            with pytest.raises(cowstore.UnsupportedTypeError, match=r"root\[0\]\): a numpy "
                               r"scalar: store x\.item\(\)"):
                cowstore.freeze([x])


class _Route(list):
    pass


class _HashedDict(dict):
    """A dict subclass that is hashable (as some frozen-dict libraries' are)."""

    def __hash__(self):
        return hash(frozenset(self.items()))


def _subclassed():
    ordered = collections.OrderedDict(a=1, b=2)
    ordered.move_to_end("a")                # its own order, unlike the dict beneath
    return [ordered, collections.defaultdict(list, a=[1]), collections.Counter("aab"),
            _Route([1, 2]), _HashedDict(a=1)]


def test_dict_and_list_subclasses_in_records_are_stored_as_the_plain_containers(registered):
    # As in a plain list or dict: an OrderedDict, a defaultdict or a list
    # subclass in a dataclass, a namedtuple or a registered class's data
    # was refused (UnsupportedTypeError).
    for value in _subclassed():
        plain = dict(value) if isinstance(value, dict) else list(value)
        outside = cowstore.thaw(cowstore.freeze([value, {"k": [value]}]))
        assert outside == [plain, {"k": [plain]}]
        records = [Row(1, value), FrozenRow(1, (value,)), Point(value, [value]),
                   Row(2, {"k": value}), Money(value, "EUR")]
        back = cowstore.thaw(cowstore.freeze(records))
        assert back == [Row(1, plain), FrozenRow(1, (plain,)), Point(plain, [plain]),
                        Row(2, {"k": plain}), Money(plain, "EUR")]
        for inside in (back[0].tags, back[1].note[0], back[2].x, back[3].tags["k"],
                       back[4].amount, outside[0], outside[1]["k"][0]):
            assert type(inside) is type(plain) and list(inside) == list(plain)


def test_set_and_tuple_subclasses_in_records_are_refused_as_elsewhere():
    for value in (_ext_types.SubSet({1}), _ext_types.SubFrozenSet({1}),
                  type("Pair", (tuple,), {})((1, 2))):
        with pytest.raises(cowstore.UnsupportedTypeError, match=r"root\[0\]\)"):
            cowstore.CowList([value])
        with pytest.raises(cowstore.UnsupportedTypeError, match=r"root\[0\]\.tags\[0\]\)"):
            cowstore.CowList([Row(1, [value])])


def test_a_record_holding_a_dict_subclass_hashes_as_what_reads_back():
    # Read back, the subclass is a plain dict: a frozen record holding a
    # hashable one would be a key that reads back unhashable, so it is no
    # key, as the subclass itself is none (a dict once stored).
    hashed = _HashedDict(a=1)
    for key in (hashed, FrozenRow(1, hashed), Point(1, (hashed,)),
                _ext_types.Holder(FrozenRow(1, hashed))):
        hash(key)
        with pytest.raises(TypeError, match="unhashable"):
            cowstore.CowDict({key: 1})
    # ...unless the field takes no part in its equality and hash.
    key = _ext_types.Tagged(1, hashed)
    d = cowstore.CowDict({key: 1})
    back = next(iter(d))
    assert back == key and hash(back) == hash(key) and d[key] == 1
    assert type(back.note) is dict
    # A record holding one equal only to itself reads back unequal to it: no key.
    for inner in (_ext_types.ByIdentity(1), _ext_types.HashedByIdentity(1)):
        with pytest.raises(TypeError, match="unhashable"):
            cowstore.CowSet([FrozenRow(1, inner)])
    # Equal records hold equal bytes: an OrderedDict's order counts, as in its ==.
    ab = collections.OrderedDict(a=1, b=2)
    ba = collections.OrderedDict(b=2, a=1)
    for x, y in [(ab, ba), (ab, {"a": 1, "b": 2}), (ba, _HashedDict(b=2, a=1))]:
        assert (cowstore.freeze([FrozenRow(1, x)]) == cowstore.freeze([FrozenRow(1, y)])) is (
            FrozenRow(1, x) == FrozenRow(1, y))


def test_a_list_subclass_holding_itself_in_a_record_is_a_cycle():
    looped = _Route()
    looped.append(looped)
    with pytest.raises(cowstore.CycleError):
        cowstore.freeze([Row(1, looped)])


def test_enum_keys_of_number_bool_or_none_values_are_written_as_json_writes_those_keys():
    # A str-valued member's key was written as its value, an int-valued
    # one's raised JsonOutputError: json.dumps writes {3: ..} as {"3": ..}.
    Level = _ext_types.Level
    keyed = {m: m.name for m in Level}
    expected = json.dumps({m.value: m.name for m in Level})
    many = {**keyed, **{f"k{i}": i for i in range(600)}}          # written entry by entry
    for value, text in [(keyed, expected),
                        (many, json.dumps({**{m.value: m.name for m in Level},
                                           **{f"k{i}": i for i in range(600)}})),
                        ([Row(1, [keyed])], json.dumps([{"id": 1, "tags": [json.loads(expected)]}]))]:
        out = io.StringIO()
        JsonWriter(out).write(cowstore.freeze(value))
        assert out.getvalue() == text
    for key in (Point(1, 2), FrozenRow(1), _ext_types.Pair.AB):
        with pytest.raises(JsonOutputError, match="key has no JSON form"):
            JsonWriter(io.StringIO()).write(cowstore.freeze({key: 1}))


def test_classes_functions_and_ellipsis_are_keys_with_the_pickle_fallback(pickle_fallback):
    # They pickle by reference and read back as themselves, so they stay
    # equal to themselves though compared by identity: stored as values,
    # they were refused as keys ("unhashable type: 'type'").
    keys = [int, Row, type(None), Ellipsis, NotImplemented, money_to_data, len]
    d = cowstore.CowDict({k: i for i, k in enumerate(keys)})
    s = cowstore.FrozenSet(keys)
    for copy_ in (d, pickle.loads(pickle.dumps(d)), cowstore.thaw(d)):
        assert all(a is b for a, b in zip(copy_, keys)) and len(copy_) == len(keys)
        assert all(copy_[k] == i for i, k in enumerate(keys))
    assert all(k in s for k in keys) and float not in s and s == cowstore.FrozenSet(keys[::-1])
    assert hash(s) == hash(cowstore.FrozenSet(keys[::-1]))
    assert list(cowstore.CowList(keys)) == keys                # as values, as before
    # An object compared by identity that pickles by value reads back a
    # copy, unequal to it: still no key.
    with pytest.raises(TypeError):
        cowstore.CowSet([_ext_types.Unkeyed()])


def test_without_the_pickle_fallback_classes_are_refused_as_values_and_keys():
    for value in (int, Ellipsis):
        for make in (lambda v: cowstore.CowList([v]), lambda v: cowstore.CowDict({v: 1})):
            with pytest.raises(cowstore.UnsupportedTypeError):
                make(value)


def test_a_key_python_hashes_but_cowstore_cannot_is_refused_saying_what_where_and_why(
        pickle_fallback):
    # It said "unhashable type: 'tuple'" for (1, Unkeyed()), which Python
    # hashes, with neither where nor why.
    Unkeyed, ByIdentity = _ext_types.Unkeyed, _ext_types.ByIdentity
    cases = [
        ({"a": {(1, Unkeyed()): 1}}, r"'Unkeyed' \(at root\['a'\]\[\(1, <.*>\)\]\[1\]\): "
                                     r"unhashable by value: it is compared by identity"),
        ({"a": [{FrozenRow(1, ByIdentity(1))}]}, r"'ByIdentity' \(at root\['a'\]\[0\]\.note\)"),
        ({"a": {Point(1, (_HashedDict(),)): 1}},
         r"'_HashedDict' \(at root\['a'\]\[Point.*\]\.y\[0\]\): unhashable once stored: a dict "
         r"subclass is stored as a plain dict"),
    ]
    for value, message in cases:
        with pytest.raises(TypeError, match="cowstore cannot store a key of type " + message):
            cowstore.freeze(value)
    # One Python cannot hash either raises as dict does.
    with pytest.raises(TypeError, match=r"^unhashable type: 'list'$"):
        cowstore.CowDict({(1, [2]): 1})


def test_looking_up_a_value_that_no_key_can_be_finds_nothing_as_dict_does(pickle_fallback):
    # Such a probe raised TypeError, where dict and set answer False.
    probes = [_ext_types.Unkeyed(), _ext_types.ByIdentity(1), FrozenRow(1, _ext_types.ByIdentity(1)),
              (1, _ext_types.HashedByIdentity(1)), Point(_HashedDict(a=1), 2)]
    plain = {1: "a", FrozenRow(1, ("a", 1)): "b"}
    for probe in probes:
        for cow, builtin in [(cowstore.CowDict(plain), plain), (cowstore.FrozenDict(plain), plain),
                             (cowstore.CowSet(plain), set(plain))]:
            assert (probe in cow) is (probe in builtin) is False
        d = cowstore.CowDict(plain)
        assert d.get(probe, "no") == "no" and d.pop(probe, "no") == "no"
        with pytest.raises(KeyError):
            d[probe]
        assert cowstore.CowSet(plain).discard(probe) is None


@pytest.mark.parametrize("n", [3, 8, 9, 40, 1000])
def test_keys_python_tells_apart_and_cowstore_holds_equal_merge_as_inserts(n):
    """A dict or set is converted in bulk (one index build, no lookup per
    key): keys that are distinct in Python but one key to cowstore -- here
    a registered class whose data leaves out a field its __eq__ compares --
    must come out as inserting them one by one gives (the first key's place,
    the last value), with and without an index (n past 8)."""
    cowstore.register(Money, lambda m: m.currency, lambda c: Money(0, c))
    try:
        plain = {Money(i, f"c{i % (n // 2 + 1)}"): i for i in range(n)}
        one_by_one = cowstore.CowDict()
        for k, v in plain.items():
            one_by_one[k] = v
        bulk = cowstore.CowDict(plain)
        assert len(bulk) == len(one_by_one) == n // 2 + 1 < len(plain)
        assert [(k.currency, v) for k, v in bulk.items()] == \
            [(k.currency, v) for k, v in one_by_one.items()]
        assert all(bulk[Money(0, k.currency)] == v for k, v in one_by_one.items())
        as_set = cowstore.CowSet(set(plain))
        assert sorted(k.currency for k in as_set) == sorted(k.currency for k in one_by_one)
        assert all(Money(0, k.currency) in as_set for k in one_by_one)
    finally:
        cowstore.unregister(Money)
