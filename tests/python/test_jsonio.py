"""The streaming JSON reader and writer behind `cowstore import/export/get`,
checked against the json module: same values, same text, same verdict on
malformed input -- with read chunks and streaming thresholds shrunk so that
every boundary case is crossed."""
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cowstore
from cowstore import _jsonin, _jsonout
from cowstore._import import import_json
from cowstore._jsonin import JsonInputError, JsonReader, open_reader, sniff_format
from cowstore._jsonout import JsonOutputError, JsonWriter

# No lone surrogates: they have no UTF-8 form, and the reader reads UTF-8.
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | texts)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=6) | st.dictionaries(texts, kids,
                                                               max_size=6),
    max_leaves=30)
layouts = st.sampled_from([{}, {"indent": 1}, {"indent": 3}, {"separators": (",", ":")},
                           {"ensure_ascii": False}])


@pytest.fixture(params=[1, 7, 1 << 20], ids=["chunk1", "chunk7", "chunk1MiB"])
def chunk(request, monkeypatch):
    monkeypatch.setattr(_jsonin, "READ_CHUNK", request.param)
    return request.param


def items_of(value):
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.items())
    return [value]


def read_all(text, fmt="json"):
    reader = JsonReader(io.BytesIO(text.encode("utf-8")), fmt)
    return reader.kind, list(reader)


@given(value=json_values, layout=layouts)
def test_reader_yields_the_top_level_items_json_parses(value, layout):
    text = json.dumps(value, **layout)
    for size in (1, 5, 1 << 20):
        _jsonin.READ_CHUNK, saved = size, _jsonin.READ_CHUNK
        try:
            kind, items = read_all(text)
        finally:
            _jsonin.READ_CHUNK = saved
        assert items == items_of(value)
        assert kind == {list: "array", dict: "object"}.get(type(value), "scalar")


@given(value=json_values, layout=layouts, data=st.data())
def test_reader_and_json_agree_on_damaged_text(value, layout, data):
    """One character replaced, deleted or inserted: the reader refuses exactly
    the texts json.loads refuses."""
    text = json.dumps(value, **layout)
    pos = data.draw(st.integers(0, len(text)))
    char = data.draw(st.sampled_from(list('[]{}",:0e.-tn \\x')))
    how = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    if how == "replace":
        text = text[:pos] + char + text[pos + 1:]
    elif how == "delete":
        text = text[:pos] + text[pos + 1:]
    else:
        text = text[:pos] + char + text[pos:]
    try:
        expected = json.loads(text)
    except ValueError:
        expected = JsonInputError
    for size in (3, 1 << 20):
        _jsonin.READ_CHUNK, saved = size, _jsonin.READ_CHUNK
        try:
            if expected is JsonInputError:
                with pytest.raises(JsonInputError):
                    read_all(text)
            else:
                kind, items = read_all(text)
                if kind == "object":        # a damaged key may repeat another
                    items = list(dict(items).items())
                assert items == items_of(expected)
        finally:
            _jsonin.READ_CHUNK = saved


def test_a_repeated_key_is_yielded_each_time_and_imports_as_json_loads_reads_it(tmp_path):
    """An object's pairs come as the text has them, a repeated key each time;
    import sets them in order, so the last value wins at the first place, as
    in json.loads."""
    text = '{"a": 1, "b": 2, "a": 3}'
    assert read_all(text) == ("object", [("a", 1), ("b", 2), ("a", 3)])
    with cowstore.open(str(tmp_path / "dup.cow")) as store:
        import_json(store, "d", JsonReader(io.BytesIO(text.encode())))
        assert list(store["d"].items()) == list(json.loads(text).items()) == [("a", 3), ("b", 2)]


@pytest.mark.parametrize("text, line, column", [
    ('{"a": [1, 2,\n  3, }\n', 2, 6),
    ('[1, 2]\n\n  x', 3, 3),
    ('[\n  {"a": 1},\n  {"b": tru}\n]', 3, 9),
    ('{"a" 1}', 1, 6),
    ('[1, 2', 1, 6),
    ('"abc', 1, 1),
    ('', 1, 1),
])
def test_errors_name_line_and_column(chunk, text, line, column):
    with pytest.raises(JsonInputError) as err:
        read_all(text)
    assert (err.value.line, err.value.column) == (line, column), str(err.value)
    assert f"line {line} column {column}" in str(err.value)


def test_invalid_utf8_is_a_positioned_error(chunk):
    with pytest.raises(JsonInputError, match="invalid UTF-8.*line 2"):
        list(JsonReader(io.BytesIO(b'[1,\n"\xff"]')))


def test_json_lines_skip_blank_lines_and_report_the_bad_line(chunk):
    reader = JsonReader(io.BytesIO(b'{"a": 1}\n\n[2]\r\n"x"'), "jsonl")
    assert list(reader) == [{"a": 1}, [2], "x"]
    with pytest.raises(JsonInputError) as err:
        list(JsonReader(io.BytesIO(b'1\n2\n{"a": }\n4\n'), "jsonl"))
    assert (err.value.line, err.value.column) == (3, 7)


class _CountingStream(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.reads = 0

    def read(self, n=-1):
        self.reads += 1
        return super().read(n)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_one_huge_item_is_read_in_geometrically_growing_chunks(monkeypatch, fmt):
    # An item cut by the end of a read is parsed again from its start: with
    # fixed-size reads an item of n chunks took n parses (quadratic).  The
    # reads now grow with the pending item: about log2(n) of them.
    monkeypatch.setattr(_jsonin, "READ_CHUNK", 1024)
    item = {"rows": [{"i": i, "s": "x" * (i % 7)} for i in range(40000)]}
    text = json.dumps([item, 1] if fmt == "json" else item) + ("\n" if fmt == "jsonl" else "")
    stream = _CountingStream(text.encode())
    got = list(JsonReader(stream, fmt))
    assert got == ([item, 1] if fmt == "json" else [item])
    chunks = len(text) // 1024                       # about 800
    assert stream.reads <= 2 * chunks.bit_length() + 4, (stream.reads, chunks)


def test_a_byte_order_mark_is_skipped():
    assert read_all("\ufeff[1]") == ("array", [1])


@pytest.mark.parametrize("name, head, fmt", [
    ("x.jsonl", b"[1,\n2]", "jsonl"),
    ("x.NDJSON", b"{}", "jsonl"),
    ("x.json", b'{"a": 1}\n{"a": 2}\n', "jsonl"),
    ("-", b"[1, 2]\n[3]", "jsonl"),
    ("x.json", b"[\n1,\n2\n]", "json"),
    ("x.json", b"[1, 2]\n", "json"),
    ("x.json", b"", "json"),
])
def test_format_sniffing(name, head, fmt):
    assert sniff_format(name, head) == fmt


def test_open_reader_puts_the_sniffed_head_back(chunk):
    reader = open_reader(io.BytesIO(b'{"a": 1}\n{"a": 2}\n'), "-")
    assert reader.kind == "lines" and list(reader) == [{"a": 1}, {"a": 2}]


# -- the writer ------------------------------------------------------------------

@given(value=json_values, indent=st.sampled_from([None, 0, 1, 4, -1]),
       small=st.sampled_from([0, 1, 3]))
def test_writer_matches_json_dumps_at_every_streaming_threshold(value, indent, small):
    saved = _jsonout.SMALL, _jsonout.SCALAR_RUN
    _jsonout.SMALL, _jsonout.SCALAR_RUN = small, small + 1
    try:
        out = io.StringIO()
        JsonWriter(out, indent).write(cowstore.freeze(value))
    finally:
        _jsonout.SMALL, _jsonout.SCALAR_RUN = saved
    assert out.getvalue() == json.dumps(value, indent=indent, ensure_ascii=False)


def test_writer_converts_keys_like_json_and_refuses_what_json_cannot(monkeypatch):
    monkeypatch.setattr(_jsonout, "SMALL", 0)
    value = cowstore.CowDict({1: "a", 2.5: "b", False: "c", None: "d"})
    out = io.StringIO()
    JsonWriter(out).write(value)
    assert out.getvalue() == json.dumps({1: "a", 2.5: "b", False: "c", None: "d"})


@pytest.mark.parametrize("small", [0, 512])
def test_writer_names_where_the_value_without_json_form_sits(monkeypatch, small):
    # streamed entry by entry (small=0) or dumped whole (small containers)
    monkeypatch.setattr(_jsonout, "SMALL", small)
    with pytest.raises(JsonOutputError, match=r"tuple key.*\(in rows/0\)"):
        JsonWriter(io.StringIO()).write(cowstore.freeze({"rows": [{(1, 2): 3}]}))
    with pytest.raises(JsonOutputError, match=r"bytes has no JSON form \(in rows/1/0\)"):
        JsonWriter(io.StringIO()).write(cowstore.freeze({"rows": [1, [b"x"]]}))
    with pytest.raises(JsonOutputError, match=r"bytes has no JSON form \(in r/a/1/0/c\)"):
        JsonWriter(io.StringIO()).write(cowstore.freeze({"a": [0, ({"c": b"x"},)]}), ["r"])


def test_writer_arrays_as_lists_or_summaries(monkeypatch):
    np = pytest.importorskip("numpy")
    value = cowstore.freeze({"a": np.arange(6, dtype=np.int32).reshape(2, 3)})
    for small in (0, 512):
        monkeypatch.setattr(_jsonout, "SMALL", small)
        out = io.StringIO()
        JsonWriter(out, indent=1).write(value)
        assert json.loads(out.getvalue()) == {"a": [[0, 1, 2], [3, 4, 5]]}
    out = io.StringIO()
    JsonWriter(out, arrays="summary").write(value)
    assert json.loads(out.getvalue()) == {"a": "ndarray(int32, shape=(2, 3))"}


@pytest.mark.parametrize("indent", [None, 0, 2])
def test_writer_arrays_of_every_size_and_longdouble(monkeypatch, indent):
    """np.longdouble elements' .item() is np.longdouble again, so json
    looped into RecursionError ('maximum recursion depth exceeded'); a big
    1-D array was streamed element by element through its own json.dumps
    each (3 million floats: 10 s)."""
    np = pytest.importorskip("numpy")
    monkeypatch.setattr(_jsonout, "SCALAR_RUN", 7)
    arrays = [np.arange(1000, dtype=np.float64) / 3, np.arange(1000) - 500,
              np.arange(600, dtype=np.longdouble), np.array([1.5, 2.5], np.longdouble),
              np.array([1 + 2j], np.clongdouble), np.arange(1200).reshape(600, 2) % 2 == 0]
    for array in arrays:
        out = io.StringIO()
        JsonWriter(out, indent=indent).write(cowstore.CowDict(x=array))
        plain = array.astype(complex if array.dtype.kind == "c" else
                             float if array.dtype.kind == "f" else array.dtype).tolist()
        plain = [[z.real, z.imag] for z in plain] if array.dtype.kind == "c" else plain
        assert out.getvalue() == json.dumps({"x": plain}, indent=indent)


def test_a_small_container_holding_a_huge_one_is_streamed():
    """Only a value of at most SMALL entries, nested ones counted, is
    converted in one piece: {"meta": ..., "rows": [10^5 rows]} used to be
    thawed whole (10x the memory the docs promise) because the dict itself
    has two keys."""
    import tracemalloc
    rows = cowstore.freeze([[i, f"x{i}"] for i in range(100_000)])
    wrap = cowstore.CowDict({"meta": {"n": 1}, "rows": rows})
    small = cowstore.CowDict({"meta": {"n": 1}, "rows": [[1, "a"]] * 100})
    assert small._small(_jsonout.SMALL) and not wrap._small(_jsonout.SMALL)
    out = io.StringIO()
    tracemalloc.start()
    JsonWriter(_NullText()).write(wrap)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    JsonWriter(out).write(wrap)
    assert json.loads(out.getvalue()) == cowstore.thaw(wrap)
    assert peak < 2 * 2**20, peak          # thawed whole: ~15 MiB


class _NullText:
    def write(self, text):
        pass


def test_a_control_character_error_reads_once_at():
    with pytest.raises(JsonInputError) as info:
        list(JsonReader(io.BytesIO(b'["a\tb"]')))
    assert "at at" not in str(info.value) and "line 1 column 4" in str(info.value)


@pytest.mark.parametrize("small", [0, 512], ids=["streamed", "whole"])
@pytest.mark.parametrize("indent", [None, 2])
def test_containers_in_tuples_and_sets_are_written_as_json_dumps_writes_them(
        monkeypatch, small, indent):
    """A tuple holding a dict ({"a": 1},) was dumped unthawed ("CowDict has
    no JSON form"), and a set of FrozenDicts or FrozenLists failed unless
    the set was streamed."""
    monkeypatch.setattr(_jsonout, "SMALL", small)
    value = cowstore.freeze({"t": ({"a": 1}, [2]), "l": [({"b": 3},)],
                             "s": cowstore.FrozenSet([cowstore.FrozenDict({"c": 4}),
                                                      cowstore.FrozenList([5])])})
    out = io.StringIO()
    JsonWriter(out, indent).write(value)
    assert out.getvalue() == json.dumps(cowstore.thaw(value), indent=indent,
                                        default=JsonWriter(None)._default)
    assert json.loads(out.getvalue())["t"] == [{"a": 1}, [2]]


@pytest.mark.parametrize("small", [0, 512], ids=["streamed", "whole"])
def test_a_key_whose_string_equals_a_str_key_is_written_twice(monkeypatch, small):
    """{date(2024, 1, 1): .., "2024-01-01": ..} lost one entry when dumped
    whole (its keys were merged in a dict) but not when streamed; both now
    write both, as json.dumps writes {1: .., "1": ..}."""
    import datetime
    import decimal
    monkeypatch.setattr(_jsonout, "SMALL", small)
    value = cowstore.freeze({datetime.date(2024, 1, 1): "date", "2024-01-01": "str",
                             "in": {decimal.Decimal("2.50"): "dec", "2.50": "str"}})
    out = io.StringIO()
    JsonWriter(out).write(value)
    assert out.getvalue() == ('{"2024-01-01": "date", "2024-01-01": "str", '
                              '"in": {"2.50": "dec", "2.50": "str"}}')


@pytest.mark.parametrize("indent", [None, 0, 2])
def test_a_streamed_list_of_scalars_is_dumped_in_runs(monkeypatch, indent):
    """Each element of a streamed list went through its own json.dumps: get
    of 3 million ints took 11 s against 0.8 s for json.dumps(thaw(v))."""
    monkeypatch.setattr(_jsonout, "SMALL", 0)
    value = [i if i % 1000 else {"at": i} for i in range(5000)] + ["é", 1.5, None, True]
    calls = []
    dumps = JsonWriter._dumps_plain
    monkeypatch.setattr(JsonWriter, "_dumps_plain",
                        lambda self, data: calls.append(1) or dumps(self, data))
    out = io.StringIO()
    JsonWriter(out, indent).write(cowstore.freeze(value))
    assert out.getvalue() == json.dumps(value, indent=indent, ensure_ascii=False)
    assert len(calls) < 40              # 5 dicts and the runs between them
