"""The `cowstore` command, run as a real console script in subprocesses
against real store files: round trips, every error's one line and exit
status, stores left unchanged by failures, progress only on a terminal."""
import bz2
import fcntl
import gzip
import json
import lzma
import os
import pty
import random
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

import cowstore
import _store_workers

PAGE = 4096                 # LMDB's page here (stats()['page_size'])
BIN = os.path.join(os.path.dirname(sys.executable), "cowstore")
# A value with what JSON has: nesting, unicode, floats, empty containers, null.
DOC = {"train": {"rows": [{"id": i, "name": f"nom-{i}-é", "score": i / 7,
                           "tags": ["a", "b"][: i % 3], "ok": i % 2 == 0, "none": None}
                          for i in range(1500)],
                 "meta": {"a/b": [1, 2, {"~": "tilde"}], "empty": {}, "list": []}},
       "test": [], "version": 3}


def cli(*args, stdin=None, check=None, env=None):
    """Runs the console script; returns the CompletedProcess (text, UTF-8).
    env: variables to add to the environment."""
    proc = subprocess.run([BIN, *map(str, args)], input=stdin, capture_output=True,
                          text=True, encoding="utf-8", timeout=120,
                          env=None if env is None else {**os.environ, **env})
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    return proc


def assert_one_line_error(proc, status, *fragments):
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cowstore: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def snapshot(path):
    """What a store holds: root names and each root as JSON (via the API)."""
    with cowstore.open(path, readonly=True) as store:
        return {n: json.dumps(cowstore.thaw(store[n])) for n in store._c()._names()}


@pytest.fixture
def files(tmp_path):
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps(DOC, indent=2, ensure_ascii=False), encoding="utf-8")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                            for r in DOC["train"]["rows"]), encoding="utf-8")
    store = tmp_path / "s.store"
    cli("import", store, "doc", doc, check=0)
    cli("import", store, "rows", rows, check=0)
    return tmp_path, store, doc, rows


# -- round trips ------------------------------------------------------------------

def test_json_export_is_byte_for_byte_what_json_dumps_writes(files):
    tmp, store, doc, _ = files
    out = tmp / "out.json"
    cli("export", store, "doc", out, "--indent", 2, check=0)
    assert out.read_text(encoding="utf-8") == doc.read_text(encoding="utf-8") + "\n"
    compact = cli("export", store, "doc", check=0).stdout
    assert compact == json.dumps(DOC, ensure_ascii=False) + "\n"


def test_json_lines_round_trip_byte_for_byte(files):
    tmp, store, _, rows = files
    out = tmp / "out.jsonl"
    cli("export", store, "rows", out, check=0)
    assert out.read_bytes() == rows.read_bytes()
    assert cli("export", store, "rows", "--format", "jsonl", check=0).stdout == \
        rows.read_text(encoding="utf-8")


def test_import_streams_in_many_commits_and_from_stdin(tmp_path):
    store = tmp_path / "s.store"
    text = json.dumps(DOC["train"]["rows"], indent=1)
    cli("import", store, "arr", "-", "--batch-bytes", 4096, stdin=text, check=0)
    obj = json.dumps({f"k{i}": {"v": i} for i in range(3000)})
    cli("import", store, "obj", "-", "--batch-bytes", 4096, stdin=obj, check=0)
    cli("import", store, "num", "-", stdin=" 42 \n", check=0)
    with cowstore.open(store, readonly=True) as s:
        assert cowstore.thaw(s["arr"]) == DOC["train"]["rows"]
        assert cowstore.thaw(s["obj"]) == json.loads(obj)
        assert list(s["obj"])[:3] == ["k0", "k1", "k2"]         # order kept
        assert s["num"] == 42
        assert s.names() == ["arr", "num", "obj"] and s.reserved_names() == []


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_compressed_files_by_suffix(files, suffix):
    tmp, store, _, rows = files
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[suffix]
    packed = tmp / f"rows.jsonl{suffix}"
    with opener(packed, "wb") as fh:
        fh.write(rows.read_bytes())
    cli("import", store, "packed", packed, check=0)
    out = tmp / f"out.jsonl{suffix}"
    cli("export", store, "packed", out, check=0)          # JSON Lines by the inner suffix
    with opener(out, "rb") as fh:
        assert fh.read() == rows.read_bytes()
    before = snapshot(store)
    cut = tmp / f"cut.jsonl{suffix}"
    cut.write_bytes(packed.read_bytes()[:-20])
    assert_one_line_error(cli("import", store, "cut", cut), 1, str(cut),
                          "nothing was imported")
    assert snapshot(store) == before


def test_python_dash_m_is_the_same_command(files):
    _, store, _, _ = files
    proc = subprocess.run([sys.executable, "-m", "cowstore", "get", store, "doc/version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "3\n"


# -- reading commands -----------------------------------------------------------

def test_get_paths_with_escapes_indices_and_indent(files):
    _, store, _, _ = files
    assert cli("get", store, "doc/train/rows/3/name", check=0).stdout == '"nom-3-é"\n'
    assert cli("get", store, "doc/train/rows/-1/id", check=0).stdout == "1499\n"
    assert json.loads(cli("get", store, "doc/train/meta/a~1b/2", check=0).stdout) == \
        {"~": "tilde"}
    out = cli("get", store, "doc/train/meta", "--indent", 1, check=0).stdout
    assert out == json.dumps(DOC["train"]["meta"], indent=1, ensure_ascii=False) + "\n"


def test_ls_lists_roots_keys_and_sizes(files):
    _, store, _, _ = files
    roots = cli("ls", store, check=0).stdout.splitlines()
    assert [line.split() for line in roots] == [["dict", "3", "doc"], ["list", "1500", "rows"]]
    rows = cli("ls", store, "doc/train/rows/2", check=0).stdout.splitlines()
    assert [line.split()[-1] for line in rows] == ["id", "name", "score", "tags", "ok", "none"]
    assert rows[0].split()[:2] == ["int", "-"] and rows[5].split()[:1] == ["None"]
    long = cli("ls", store, "doc/train", "--long", "--bytes", check=0).stdout.splitlines()
    sizes = {line.split()[-1]: int(line.split()[2]) for line in long}
    assert sizes["rows"] > 50 * sizes["meta"] > 0


def test_info_reports_roots_sizes_and_format(files):
    _, store, _, _ = files
    text = cli("info", store, check=0).stdout
    for fragment in ("cowstore format 6", "live data", "segments", "nodes", "roots       2",
                     "lmdb", "free pages", "database     entries", "segs   "):
        assert fragment in text, text
    data = json.loads(cli("info", store, "--json", check=0).stdout)
    assert data["names"]["rows"] == {"type": "list", "length": 1500}
    assert data["roots"] == 2
    assert data["nodes"] >= 1500 // 32 and data["file_size"] >= data["segment_bytes"] > 0
    assert data["format_version"] == 6 and data["unfinished_imports"] == 0
    assert data["lmdb"]["segs"]["overflow_pages"] >= data["segments"]
    assert data["lmdb"]["roots"]["entries"] == 2


def test_du_sizes_add_up(files):
    _, store, _, _ = files
    lines = cli("du", store, "--bytes", check=0).stdout.splitlines()
    sizes = {line.split(None, 1)[1]: int(line.split()[0]) for line in lines}
    assert sizes["total (shared nodes counted once)"] <= sizes["doc"] + sizes["rows"]
    assert sizes["total (shared nodes counted once)"] >= max(sizes["doc"], sizes["rows"])
    sub = cli("du", store, "doc/train", "--bytes", "--sort", check=0).stdout.splitlines()
    assert [line.split()[1] for line in sub] == ["doc/train/rows", "doc/train/meta",
                                                 "doc/train"]
    assert "KiB" in cli("du", store, "doc", check=0).stdout


def test_diff_lists_changed_paths_with_diff_exit_status(tmp_path):
    store = tmp_path / "s.store"
    old = {"rows": [{"name": "ann"}, {"name": "bob"}], "meta": {"v": 1, "gone": True}}
    with cowstore.open(store) as s:
        s["v1"] = old
        new = s["v1"].copy()
        new["rows"][1]["name"] = "rob"
        new["rows"].append({"name": "cy"})
        del new["meta"]["gone"]
        s["v2"] = new
    same = cli("diff", store, "v1", "v1")
    assert same.returncode == 0 and same.stdout == ""
    proc = cli("diff", store, "v1", "v2")
    assert proc.returncode == 1, proc.stderr
    assert sorted(proc.stdout.splitlines()) == sorted([
        '~ rows/1/name: "bob" -> "rob"', '+ rows/2: {"name": "cy"}', "- meta/gone: true"])
    assert_one_line_error(cli("diff", store, "v1", "nope"), 2, "no root named 'nope'")


def test_compact_and_compacted_copy(files):
    tmp, store, _, _ = files
    before = snapshot(store)
    copy = tmp / "copy.store"
    proc = cli("compact", store, "--output", copy, check=0)
    assert "live data" in proc.stdout and "wrote" in proc.stdout
    assert snapshot(store) == before and snapshot(copy) == before
    assert_one_line_error(cli("compact", store, "--output", copy), 1, "exists")


def test_a_compacted_copy_through_a_symbolic_link_is_written_where_it_points(files):
    """compact --output renamed the copy over a link to a path not made yet
    (the link became the store, its target stayed absent)."""
    tmp, store, _, _ = files
    (tmp / "copies").mkdir()
    os.symlink("copies/today.store", tmp / "latest.store")
    cli("compact", store, "--output", tmp / "latest.store", check=0)
    assert os.readlink(tmp / "latest.store") == "copies/today.store"
    assert snapshot(tmp / "copies" / "today.store") == snapshot(store)


# -- failures: one line, the right status, nothing changed -------------------------

@pytest.mark.parametrize("text, where", [
    ('{"a": [1, 2,\n  3, }\n', "line 2 column 6"),
    ('[{"a": 1},\n {"b": tru}]', "line 2 column 8"),
    ("[1, 2", "line 1 column 6"),
    ('{"a": 1} {"b": 2}', "line 1 column 10"),
    ("", "line 1 column 1"),
])
def test_malformed_json_reports_where_and_imports_nothing(files, text, where):
    tmp, store, _, _ = files
    before = snapshot(store)
    bad = tmp / "bad.json"
    bad.write_text(text)
    assert_one_line_error(cli("import", store, "doc", bad, "--replace"), 1, str(bad), where,
                          "nothing was imported")
    assert snapshot(store) == before


def test_malformed_line_late_in_a_big_file_leaves_no_trace(files):
    tmp, store, _, rows = files
    before = snapshot(store)
    bad = tmp / "bad.jsonl"
    bad.write_bytes(rows.read_bytes() * 3 + b'{"id": \n')
    proc = cli("import", store, "more", bad, "--batch-bytes", 8192)
    assert_one_line_error(proc, 1, "line 4501 column 8")
    assert snapshot(store) == before            # no root, no temporary root left


def test_bad_invalid_utf8_is_refused(files):
    tmp, store, _, _ = files
    bad = tmp / "bad.json"
    bad.write_bytes(b'["ok",\n "\xff"]')
    assert_one_line_error(cli("import", store, "x", bad), 1, "invalid UTF-8", "line 2")


@pytest.mark.parametrize("args, fragments", [
    (["get", "{store}", "doc/train/rows/1500"], ["index 1500 is out of range",
                                                 "doc/train/rows", "length 1500"]),
    (["get", "{store}", "doc/nope"], ["no key 'nope' in the dict at doc"]),
    (["get", "{store}", "doc/version/x"], ["doc/version is an int"]),
    (["ls", "{store}", "doc/train/rows/x"], ["'x' is not an index"]),
    (["du", "{store}", "ghost"], ["no root named 'ghost'"]),
    (["get", "{tmp}/missing.store", "a"], ["missing.store: no such store"]),
    (["import", "{store}", "doc", "{tmp}/missing.json"], ["missing.json",
                                                          "No such file or directory"]),
    (["import", "{store}", "doc", "{tmp}/doc.json"], ["root 'doc' exists", "--replace"]),
    (["export", "{store}", "doc", "--format", "jsonl"], ["JSON Lines export needs a list"]),
    (["get", "{tmp}/doc.json", "a"], ["doc.json: not a store"]),
])
def test_errors_are_one_line_with_status_1(files, args, fragments):
    tmp, store, _, _ = files
    before = snapshot(store)
    argv = [a.format(store=store, tmp=tmp) for a in args]
    assert_one_line_error(cli(*argv), 1, *fragments)
    assert snapshot(store) == before


def test_corrupt_store_is_a_one_line_error(files):
    tmp, store, _, _ = files
    damaged = tmp / "damaged.store"
    data = bytearray(store.read_bytes())
    data[:4096 * 2] = bytes(4096 * 2)           # both LMDB meta pages
    damaged.write_bytes(bytes(data))
    for command in (["info", damaged], ["ls", damaged], ["get", damaged, "doc"]):
        proc = cli(*command)
        assert_one_line_error(proc, 1, str(damaged))


def test_damaged_segments_give_a_one_line_error_never_a_crash(files):
    """Bytes flipped inside the data pages (the segments: LMDB's own B-tree
    pages, where a damaged root name reads as a missing root, are left
    alone): every command either works (the damage fell where nothing
    reads) or fails in one line with status 1."""
    tmp, store, _, _ = files
    data = store.read_bytes()
    btree = _store_workers.lmdb_btree_pages(data, PAGE)
    rng = random.Random(4)
    failures = 0
    segment_bytes = [i for i in range(len(data)) if i // PAGE not in btree]
    for trial in range(12):
        damaged = tmp / f"damaged{trial}.store"
        copy = bytearray(data)
        for offset in rng.sample(segment_bytes, 40):
            copy[offset] ^= 0xFF
        damaged.write_bytes(bytes(copy))
        for command in (["export", damaged, "doc"], ["du", damaged],
                        ["get", damaged, "rows/7"]):
            proc = cli(*command)
            assert proc.returncode in (0, 1), (command, proc.returncode, proc.stderr[-2000:])
            if proc.returncode:
                assert_one_line_error(proc, 1)
                assert "corrupt" in proc.stderr.lower(), proc.stderr
                failures += 1
    assert failures > 0, "no damage was noticed: the test flips nothing that is read"


def test_usage_errors_exit_2_and_debug_shows_the_traceback(files):
    _, store, _, _ = files
    for argv in ([], ["bogus"], ["get", store], ["ls", store, "--bad-flag"],
                 ["get", store, "doc", "--arrays", "bogus"]):
        proc = cli(*argv)
        assert proc.returncode == 2 and "usage: cowstore" in proc.stderr, (argv, proc.stderr)
    for command in ("info", "ls", "get", "import", "export", "diff", "compact", "du"):
        proc = cli(command, "--help", check=0)
        assert proc.stdout.startswith(f"usage: cowstore {command}")
    proc = cli("--debug", "get", store, "doc/nope")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "PathError" in proc.stderr


def test_unexportable_values_leave_no_partial_file(tmp_path):
    store = tmp_path / "s.store"
    with cowstore.open(store) as s:
        s["r"] = list(range(2000)) + [b"bytes"]
    out = tmp_path / "out.json"
    assert_one_line_error(cli("export", store, "r", out), 1, "bytes has no JSON form", "r/2000")
    with cowstore.open(store) as s:
        s["small"] = {"rows": [{"id": 1, "blob": b"x"}]}
    for command in (("get", store, "small"), ("export", store, "small", out)):
        assert_one_line_error(cli(*command), 1, "bytes has no JSON form", "(in small/rows/0/blob)")
    assert sorted(os.listdir(tmp_path)) == ["s.store", "s.store-lock"]


def test_numpy_arrays_as_lists_or_summaries(tmp_path):
    np = pytest.importorskip("numpy")
    store = tmp_path / "s.store"
    with cowstore.open(store) as s:
        s["r"] = {"x": np.arange(6, dtype=np.float32).reshape(3, 2)}
    assert json.loads(cli("get", store, "r/x", check=0).stdout) == [[0, 1], [2, 3], [4, 5]]
    assert cli("get", store, "r", "--arrays", "summary", check=0).stdout == \
        '{"x": "ndarray(float32, shape=(3, 2))"}\n'
    assert cli("ls", store, "r", check=0).stdout.split() == ["ndarray[float32]", "3x2", "x"]


def test_a_closed_pipe_ends_quietly(files):
    _, store, _, _ = files
    proc = subprocess.run(f"'{BIN}' export '{store}' rows --format jsonl | head -n 1", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert json.loads(proc.stdout) == DOC["train"]["rows"][0]
    assert proc.stderr == ""


def test_replace_overwrites_and_a_killed_import_changes_nothing(files):
    tmp, store, doc, rows = files
    before = snapshot(store)
    proc = _import_under_way(tmp, store, rows, "doc", "--replace")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert snapshot(store) == {**before, **_reserved_snapshot(store)}
    cli("import", store, "doc", rows, "--replace", check=0)    # sweeps the dead one's root
    after = snapshot(store)
    assert set(after) == {"doc", "rows"} and json.loads(after["doc"]) == DOC["train"]["rows"]


def test_interrupted_import_cleans_up_and_exits_130(files):
    tmp, store, _, rows = files
    before = snapshot(store)
    proc = _import_under_way(tmp, store, rows, "late")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "cowstore: interrupted\n", (proc.returncode, err)
    assert snapshot(store) == before            # the temporary root is gone too


def _import_under_way(tmp, store, rows, name, *options):
    """An import of ~60 MiB into `name`, returned once it has committed its
    first batch under the temporary root (so stopping it now is mid-import).
    Sized to last seconds even where records pack small and commits are
    quick: the signal must find it still running on a loaded machine."""
    big = tmp / "big.jsonl"
    big.write_bytes(rows.read_bytes() * 400)
    proc = subprocess.Popen([BIN, "import", store, name, big, *options,
                             "--batch-bytes", "32768"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _has_reserved_root(store):
        assert time.monotonic() < deadline and proc.poll() is None, "no batch was committed"
        time.sleep(0.02)
    return proc


def _has_reserved_root(store):
    with cowstore.open(store, readonly=True) as s:
        return bool(s.reserved_names())


def _reserved_snapshot(store):
    return {k: v for k, v in snapshot(store).items() if k.startswith("\x00")}


# -- progress ---------------------------------------------------------------------

def test_progress_bar_on_a_terminal_only(files):
    tmp, store, _, rows = files
    piped = cli("import", store, "p1", rows, check=0)
    assert piped.stderr == "" and piped.stdout == ""
    pid, fd = pty.fork()
    if pid == 0:                                        # child: stdio on the terminal
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        os.execv(BIN, [BIN, "import", str(store), "p2", str(rows)])
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:                                 # EIO once the child is gone
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    text = output.decode("utf-8", "replace")
    assert "import p2" in text and "100%" in text, text
    assert "imported 1500 lines into p2" in text


# -- memory ------------------------------------------------------------------------

def _peak_rss_of_import(store, src):
    proc = subprocess.Popen([BIN, "import", store, "r", src, "--batch-bytes", str(1 << 20)])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    return usage.ru_maxrss * 1024                       # KiB on Linux


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="ASan's quarantine keeps freed memory resident")
def test_import_memory_stays_flat_as_the_input_grows(tmp_path):
    """8x the input, about the same peak RSS: a loader holding the data would
    grow by ~3x the extra input (the store's size), this one by a little.
    (bench/bench_import.py measures the same up to 1 GiB.)"""
    peaks = {}
    for mb in (4, 32):
        src = tmp_path / f"in{mb}.jsonl"
        with open(src, "w") as fh:
            i = 0
            while fh.tell() < mb << 20:
                fh.write(json.dumps({"id": i, "name": f"user{i}", "tags": ["a", "b"][: i % 3],
                                     "score": i / 3}) + "\n")
                i += 1
        peaks[mb] = _peak_rss_of_import(tmp_path / f"s{mb}.store", src)
        with cowstore.open(tmp_path / f"s{mb}.store", readonly=True) as s:
            assert len(s["r"]) == i
    growth = peaks[32] - peaks[4]
    assert growth < 12 << 20, f"peak RSS grew {growth >> 20} MiB for 28 MiB more input"


def test_an_import_refused_because_the_root_exists_still_removes_abandoned_ones(tmp_path):
    """cli.md: the next import removes what a killed importer left; the
    existence check used to come first and skip that."""
    from cowstore import _import
    store_path, doc = tmp_path / "s.cow", tmp_path / "one.json"
    doc.write_text("[1]")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with cowstore.open(str(store_path)) as store:
        store["r"] = [0]
        store[f"{_import._TEMP_PREFIX}{_import._host()}:{dead}:0123456789abcdef"] = [1]
        assert len(store.reserved_names()) == 1
    assert_one_line_error(cli("import", store_path, "r", doc), 1, "root 'r' exists")
    with cowstore.open(str(store_path), readonly=True) as store:
        assert store.reserved_names() == [] and list(store["r"]) == [0]


@pytest.mark.parametrize("target", ["a directory", "a missing directory"])
def test_an_export_error_names_the_users_file(tmp_path, target):
    store_path = tmp_path / "s.cow"
    with cowstore.open(str(store_path)) as store:
        store["p"] = {"a": 1}
    out = tmp_path / "dir" if target == "a directory" else tmp_path / "nodir" / "x.json"
    if target == "a directory":
        out.mkdir()
    proc = cli("export", store_path, "p", out)
    assert_one_line_error(proc, 1, f"{out}: ")
    assert ".tmp-" not in proc.stderr


# -- output, store files, concurrent writers ---------------------------------------

@pytest.fixture
def no_int_digit_limit():
    """Lifts Python's int -> str limit here, to build the expected texts."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    yield
    sys.set_int_max_str_digits(limit)


def test_ints_of_any_length_are_written(tmp_path, no_int_digit_limit):
    """Python refuses int -> str past 4300 digits; the CLI failed with that
    message and no path."""
    store = tmp_path / "s.cow"
    with cowstore.open(store) as s:
        s["a"], s["b"] = [10**5000], {"n": 10**5000 + 1}
    assert cli("get", store, "a", check=0).stdout == f"[{10**5000}]\n"
    assert cli("export", store, "b", check=0).stdout == f'{{"n": {10**5000 + 1}}}\n'
    assert cli("diff", store, "a/0", "b/n", "--full", check=1).stdout == \
        f"~ (the whole value): {10**5000} -> {10**5000 + 1}\n"


def test_every_command_writes_utf8_whatever_the_locale(tmp_path):
    """ls, info, du and diff printed through sys.stdout, whose encoding is
    the locale's: with ASCII they failed at the first non-ASCII key."""
    store = tmp_path / "s.cow"
    with cowstore.open(store) as s:
        s["é"], s["ü"] = {"ключ": 1}, {"ключ": 2}
    ascii_out = {"PYTHONIOENCODING": "ascii"}
    assert cli("ls", store, env=ascii_out, check=0).stdout.split()[-1] == "ü"
    assert cli("ls", store, "é", env=ascii_out, check=0).stdout.split()[-1] == "ключ"
    assert cli("info", store, env=ascii_out, check=0).stdout.splitlines()[-1].endswith("ü")
    assert cli("du", store, "é", env=ascii_out, check=0).stdout.split()[2::3] == \
        ["é/ключ", "é"]
    assert cli("diff", store, "é", "ü", env=ascii_out, check=1).stdout == "~ ключ: 1 -> 2\n"


@pytest.mark.parametrize("command", [["get", "{store}", "doc/version"], ["ls", "{store}"],
                                     ["diff", "{store}", "doc", "rows"]])
def test_a_closed_or_full_stdout_is_a_one_line_error(files, command):
    """With stdout closed, get failed with "'NoneType' object has no
    attribute 'buffer'" and ls printed nothing and exited 0; a full device
    gave "[Errno 28] ..." without saying it was the output."""
    _, store, _, _ = files
    argv = [BIN] + [a.format(store=store) for a in command]
    status = 2 if command[0] == "diff" else 1
    closed = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            timeout=60, preexec_fn=lambda: os.close(1))
    assert_one_line_error(closed, status, "standard output is closed")
    with open("/dev/full", "w") as full:
        proc = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert_one_line_error(proc, status, "standard output: No space left on device")


def test_export_to_a_pipe_or_device_writes_into_it(tmp_path):
    """export renamed a temporary file over FILE: run as root, a FIFO (or
    /dev/null) was replaced by a regular file."""
    import stat
    store, fifo = tmp_path / "s.cow", tmp_path / "fifo"
    with cowstore.open(store) as s:
        s["r"] = [1, 2]
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        cli("export", store, "r", fifo, check=0)
        assert os.read(reader, 100) == b"[1, 2]\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_export_to_a_descriptor_link_writes_into_the_descriptor(tmp_path):
    """FILE /dev/stdout (a link to /proc/self/fd/1) with stdout redirected to
    a file: export renamed a temporary file over the link, so, run as root,
    it replaced /dev/stdout itself and wrote nothing to stdout; /dev/fd/1
    failed ("No such file or directory").  A link of the test's own stands
    for /dev/stdout, which a failing run would replace."""
    store, out, link = tmp_path / "s.cow", tmp_path / "out.json", tmp_path / "stdout"
    with cowstore.open(store) as s:
        s["r"] = [1, 2]
    os.symlink("/proc/self/fd/1", link)
    for target in (link, "/dev/fd/1"):
        with open(out, "w") as f:
            proc = subprocess.run([BIN, "export", store, "r", target], stdout=f,
                                  stderr=subprocess.PIPE, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert out.read_text() == "[1, 2]\n"
    assert os.readlink(link) == "/proc/self/fd/1"


def test_export_to_a_symbolic_link_replaces_the_file_it_names(tmp_path):
    """export renamed its temporary file over the link itself: latest.json,
    a link to a dated file, became a file of its own and the dated file was
    left as it was."""
    store, real, link = tmp_path / "s.cow", tmp_path / "2024.json", tmp_path / "latest.json"
    with cowstore.open(store) as s:
        s["r"] = [1, 2]
    real.write_text("old\n")
    os.symlink(real.name, link)
    cli("export", store, "r", link, check=0)
    assert os.readlink(link) == real.name and real.read_text() == "[1, 2]\n"
    assert sorted(os.listdir(tmp_path)) == sorted(["s.cow", "s.cow-lock", "2024.json", "latest.json"])


@pytest.mark.parametrize("target", ["missing", "empty file", "empty directory", "text file"])
def test_no_command_makes_a_store_of_what_is_not_one(tmp_path, target):
    """compact created a store (exit 0) at a missing path, in an empty
    directory or over an empty file; a 0-byte file read as "Bad file
    descriptor"; and a read of a text file left a PATH-lock file beside it."""
    path = tmp_path / "x.cow"
    if target == "empty file":
        path.touch()
    elif target == "empty directory":
        path.mkdir()
    elif target == "text file":
        path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    expected = {"missing": "x.cow: no such store",
                "empty file": "x.cow: not a store (an empty file)",
                "empty directory": "x.cow: a directory without a store",
                "text file": "x.cow: not a store (no LMDB header)"}[target]
    before = sorted(os.walk(tmp_path))
    for command in (["compact", path], ["info", path], ["ls", path], ["get", path, "a"],
                    ["du", path], ["compact", path, "--output", tmp_path / "new.cow"]):
        assert_one_line_error(cli(*command), 1, expected)
    assert sorted(os.walk(tmp_path)) == before


def test_a_truncated_store_is_named(files):
    tmp, store, _, _ = files
    cut = tmp / "cut.store"
    cut.write_bytes(store.read_bytes()[:PAGE * 4])
    assert_one_line_error(cli("ls", cut), 1, f"{cut}: ", "truncated")


def test_a_failed_compacted_copy_leaves_nothing_and_names_the_copy(files, monkeypatch, capfd):
    """compact --output wrote the copy in place: a failure part-way left a
    half-made store at NEW, and the error named no file."""
    from cowstore import _cli
    tmp, store, _, _ = files
    new = tmp / "new.store"

    class FailingStore(cowstore.Store):
        def __setitem__(self, name, value):
            if name == "rows":
                raise cowstore.StoreError("MDB_MAP_FULL: Environment mapsize limit reached")
            super().__setitem__(name, value)

    monkeypatch.setattr(_cli, "Store", FailingStore)
    assert _cli.main(["compact", str(store), "--output", str(new)]) == 1
    assert capfd.readouterr().err == f"cowstore: error: {new}: MDB_MAP_FULL: Environment " \
                                     "mapsize limit reached\n"
    assert sorted(os.listdir(tmp)) == ["doc.json", "rows.jsonl", "s.store", "s.store-lock"]


def test_listings_skip_a_root_deleted_after_names_listed_it(files, monkeypatch, capfd):
    """ls, info and du read names() then each root: one deleted in between
    failed the command with the bare KeyError text ("cowstore: error: r45")."""
    from cowstore import _cli
    _, store, _, _ = files
    names = cowstore.Store.names
    monkeypatch.setattr(cowstore.Store, "names", lambda self: names(self) + ["gone"])
    for command in (["ls"], ["info"], ["du"]):
        assert _cli.main(command + [str(store)]) == 0, capfd.readouterr().err
        out = capfd.readouterr().out
        assert " rows" in out and "gone" not in out


def test_listings_and_copies_while_a_writer_deletes_roots(tmp_path):
    """The same race for real: a writer replaces and deletes roots as fast as
    it can while ls, info, du and compact --output run."""
    store = tmp_path / "s.cow"
    with cowstore.open(store) as s:
        for i in range(50):
            s[f"r{i}"] = [i]
    writer = subprocess.Popen([sys.executable, "-c", f"""
import cowstore, itertools
s = cowstore.open({str(store)!r})
for i in itertools.count():
    s[f"r{{i % 50}}"] = list(range(i % 100))
    s.pop(f"r{{(i + 7) % 50}}", None)
"""])
    try:
        for trial in range(3):
            for command in (["ls", store], ["info", store], ["du", store],
                            ["compact", store, "--output", tmp_path / f"copy{trial}.cow"]):
                cli(*command, check=0)
    finally:
        writer.kill()
        writer.wait()


# -- paths as ls, du and diff print them ---------------------------------------------

KEYS = {"/": 1, "~1": 2, "": 3, "a\nb": 4, "tab\tx": 5, "\u2028": 6, None: 7, 1.5: 8,
        (1, 2): 9, b"k": 10, "5": 11, 5: 12, 7: 13, True: 14, "é~{a}": 15}


def test_every_key_ls_and_du_print_names_it_back(tmp_path):
    """ls printed raw keys ("~1" for key "~1", which get reads as key "/"),
    keys with a newline across two lines, and non-str keys as reprs no path
    could name; du printed escaped steps.  Every line now holds a step that
    get reads back as that key's value."""
    store = tmp_path / "s.cow"
    with cowstore.open(store) as s:
        s["d"], s["a/b"] = KEYS, 0
    lines = cli("ls", store, "d", check=0).stdout.splitlines()
    assert len(lines) == len(KEYS)
    steps = [line.split("  ")[-1] for line in lines]
    du_steps = [line.split("  d/", 1)[1] for line in cli("du", store, "d", check=0)
                .stdout.splitlines()[:-1]]
    assert du_steps == steps
    assert [int(cli("get", store, f"d/{step}", check=0).stdout) for step in steps] == \
        list(KEYS.values())
    roots = [line.split("  ")[-1] for line in cli("ls", store, check=0).stdout.splitlines()]
    assert roots == ["a~1b", "d"]
    assert cli("info", store, check=0).stdout.splitlines()[-2].endswith("  a~1b")
    assert cli("get", store, roots[0], check=0).stdout == "0\n"


def test_the_empty_key_is_named_by_an_escape_and_trailing_slashes_still_do_nothing(tmp_path):
    """A trailing / was stripped, so no path named the empty key last."""
    store = tmp_path / "s.cow"
    with cowstore.open(store) as s:
        s["d"] = {"": {"": 1, "x": 2}, "x": 3}
    assert cli("get", store, "d/~{}", check=0).stdout == '{"": 1, "x": 2}\n'
    assert cli("get", store, "d//~{}", check=0).stdout == "1\n"
    assert json.loads(cli("get", store, "d/", check=0).stdout) == {"": {"": 1, "x": 2}, "x": 3}


def test_set_members_and_steps_into_leaves(tmp_path):
    """ls and du showed a set's positions as keys, and du printed paths such
    as s/0 that get rejects; a step into a tuple said it "has no '0' inside"."""
    store = tmp_path / "s.cow"
    with cowstore.open(store) as s:
        s["d"] = {"s": {1, "a"}, "t": (1, 2)}
    assert sorted(cli("ls", store, "d/s", check=0).stdout.split()) == \
        ["-", "-", "-", "1", "int", "str"]
    du = cli("du", store, "d/s", check=0).stdout.splitlines()
    assert len(du) == 1 and du[0].endswith("  d/s")
    assert_one_line_error(cli("get", store, "d/t/0"), 1,
                          "d/t is a tuple: paths step only into dicts and lists")
    assert_one_line_error(cli("get", store, "d/s/0"), 1, "d/s is a set: paths step only")
    assert_one_line_error(cli("get", store, "d/~(datetime.date(2024, 1, 1))"), 1,
                          "is not a Python literal")


def test_diff_shows_a_changed_array_as_changed(tmp_path):
    """diff summarised arrays even with --full, so a changed array showed
    the same text on both sides of its ~ line."""
    np = pytest.importorskip("numpy")
    store = tmp_path / "s.cow"
    changed = np.arange(2000)
    changed[1500] = -1
    with cowstore.open(store) as s:
        s["a"], s["b"] = {"x": np.arange(2000)}, {"x": changed}
    line = cli("diff", store, "a", "b", check=1).stdout
    old, new = line.removeprefix("~ x: ").rstrip("\n").split(" -> ")
    assert old != new and old.startswith('"ndarray(int64, shape=(2000,)) #')
    full = cli("diff", store, "a", "b", "--full", check=1).stdout
    assert full == f"~ x: {json.dumps(list(range(2000)))} -> {json.dumps(changed.tolist())}\n"


class _Pickled:
    """Stored only through pickle's fallback."""


class _Registered:
    def __init__(self, v):
        self.v = v


def test_leaves_the_cli_cannot_read_are_named_where_they_are(tmp_path):
    """cli.md promised that an error names where a pickled leaf is; the
    message named nothing (a class registered in the writing process only,
    likewise)."""
    import pickle
    store = tmp_path / "s.cow"
    previous = cowstore.set_fallback(pickle)
    cowstore.register(_Registered, lambda r: r.v, _Registered)
    try:
        with cowstore.open(store) as s:
            s["p"] = {"rows": [1, {"obj": _Pickled()}]}
            s["r"] = {"rows": [1, {"obj": _Registered(2)}]}
    finally:
        cowstore.set_fallback(previous)
        cowstore.unregister(_Registered)
    for root, what in (("p", "a pickled leaf"), ("r", "is not registered")):
        for command in (["get", store, root], ["export", store, root],
                        ["get", store, f"{root}/rows/1/obj"], ["ls", store, f"{root}/rows/1"],
                        ["du", store, f"{root}/rows/1"]):
            assert_one_line_error(cli(*command), 1, what, f"(in {root}/rows/1/obj)")
        assert_one_line_error(cli("diff", store, root, "p" if root == "r" else "r"), 2, what,
                              f"(in {root}/rows/1/obj)")


def test_info_json_gives_lengths_as_numbers(tmp_path):
    """info --json gave each root's length as ls's text ("3")."""
    np = pytest.importorskip("numpy")
    store = tmp_path / "s.cow"
    with cowstore.open(store) as s:
        s["d"], s["n"], s["a"], s["s"] = {"x": 1, "y": 2}, 7, np.zeros((3, 2)), "abc"
    names = json.loads(cli("info", store, "--json", check=0).stdout)["names"]
    assert names == {"a": {"type": "ndarray[float64]", "length": [3, 2]},
                     "d": {"type": "dict", "length": 2}, "n": {"type": "int", "length": None},
                     "s": {"type": "str", "length": 3}}
