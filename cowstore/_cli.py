"""The ``cowstore`` command: look into, load and maintain store files.

    cowstore info STORE                 what the file holds, sizes, LMDB figures
    cowstore ls STORE [PATH]            entries at a path (--long: sizes)
    cowstore get STORE PATH             a value as JSON
    cowstore import STORE NAME FILE     JSON / JSON Lines into a root, streamed
    cowstore export STORE NAME [FILE]   a root as JSON / JSON Lines, streamed
    cowstore diff STORE NAME1 NAME2     changed paths between two roots
    cowstore compact STORE              rewrite live data, free the rest
    cowstore du STORE [PATH]            space per subtree

Exit status: 0 success, 1 failure, 2 bad usage -- except diff, which
follows diff(1): 0 same, 1 different, 2 failure.  Errors are one line on
stderr ("cowstore: error: ..."); --debug shows the traceback instead.
docs/cli.md is the manual.
"""
import argparse
import bz2
import contextlib
import errno
import gzip
import io
import json
import lzma
import os
import struct
import sys
import traceback

from . import _cowstore
from ._cowstore import DictBase, ListBase, SetBase
from ._diff import MISSING, diff
from ._import import BATCH_BYTES, import_json, remove_abandoned_imports
from ._jsonin import JSONL_SUFFIXES, JsonInputError, open_reader
from ._jsonout import JsonWriter
from ._paths import join, resolve, step_text
from ._store import Store, _remove_files
from ._types import is_ndarray, type_name

EXIT_OK, EXIT_FAILURE = 0, 1           # argparse exits 2 on bad usage
EXIT_DIFF_CHANGES, EXIT_DIFF_FAILURE = 1, 2   # diff(1)'s: 0 same, 1 different, 2 trouble
EXIT_INTERRUPTED = 130              # 128 + SIGINT, as shells report it
# Characters of a value shown per line by diff (--full shows all).
DIFF_PREVIEW = 72
# Output is written in pieces of this size.
OUTPUT_BUFFER = 1 << 16
# Links an output path may go through before it is refused as a loop
# (ELOOP): Linux's MAXSYMLINKS, the kernel's own bound on a path's links.
MAX_SYMLINKS = 40
# Files named with these suffixes are read and written compressed.
COMPRESSORS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
# What a damaged compressed input raises.
COMPRESSED_INPUT_ERRORS = (OSError, EOFError, lzma.LZMAError)
# LMDB's data file opens with a meta page whose MDB_meta starts with this
# magic (lmdb.h's MDB_MAGIC, in the machine's byte order), after the page
# header: 16 bytes on 64-bit builds (an 8-byte page number, then 2+2+2+2).
LMDB_MAGIC, LMDB_MAGIC_AT = 0xBEEFC0DE, 16
LMDB_MAGIC_FORMAT = "=I"
# A listing of the roots is read again this many times while commits land
# during it (see _roots); then each root is read as of its own moment.
SNAPSHOT_TRIES = 5
# What ls prints in the key column for a set's members, which no path names.
SET_MEMBER = "-"


class CliError(Exception):
    """A failure the command explains in its one-line message."""


# -- helpers -----------------------------------------------------------------

def _open_store(path, write=False, create=False):
    """Opens STORE: readonly for the commands that only read.  Only import
    (`create`) makes a new store; for the others a missing file, or one
    that is not a store, is an error -- found before LMDB would leave its
    lock file beside it."""
    _check_store_file(path, create)
    try:
        return Store(path, readonly=not write)
    except (_cowstore.CowstoreError, OSError) as e:
        message = _error_message(e)
        raise CliError(message if message.startswith(path) else f"{path}: {message}") from None


def _check_store_file(path, create):
    """Raises CliError unless path is an LMDB file (or a directory holding
    one) -- or, with `create`, nothing yet that LMDB would refuse to make
    a store of (a missing or empty file)."""
    data = os.path.join(path, "data.mdb") if os.path.isdir(path) else path
    head_size = LMDB_MAGIC_AT + struct.calcsize(LMDB_MAGIC_FORMAT)
    try:
        with open(data, "rb") as f:
            head = f.read(head_size)
    except FileNotFoundError:
        head = None
    if create and not head:
        return
    if head is None and data != path:
        raise CliError(f"{path}: a directory without a store (data.mdb) in it")
    if head is None:
        raise CliError(f"{path}: no such store")
    if not head:
        raise CliError(f"{path}: not a store (an empty file)")
    if len(head) < head_size or \
            struct.unpack_from(LMDB_MAGIC_FORMAT, head, LMDB_MAGIC_AT)[0] != LMDB_MAGIC:
        raise CliError(f"{path}: not a store (no LMDB header)")


def _roots(store):
    """[(name, value)] of every root as of one commit.  A readonly store
    has no read transaction spanning several reads (each store[name] reads
    the latest commit), so the listing is read again while a commit lands
    during it (LMDB's last transaction id moved).  Past SNAPSHOT_TRIES,
    under a writer that commits all the time, each root is as of its own
    read, and one deleted after names() listed it is left out."""
    for _ in range(SNAPSHOT_TRIES):
        before = store.stats()["last_txn"]
        roots = []
        for name in store.names():
            with contextlib.suppress(KeyError):     # deleted since names() listed it
                roots.append((name, store[name]))
        if store.stats()["last_txn"] == before:
            break
    return roots


@contextlib.contextmanager
def _naming_unreadable(*located):
    """Adds to a read error (a pickled leaf while the CLI keeps pickle's
    fallback off, a class registered elsewhere, damage) the path of the
    first entry that cannot be read under each (value, keys) of `located`."""
    try:
        yield
    except _cowstore.CorruptStoreError as e:
        for value, keys in located:
            where = _first_unreadable(value, list(keys))
            if where is not None:
                raise type(e)(f"{e} (in {join(where)})") from None
        raise


def _first_unreadable(value, path):
    """The path of the first entry under value whose read fails, or None.
    Only called after a failure: it reads every entry again, one by one."""
    if isinstance(value, DictBase):
        steps = value
    elif isinstance(value, (ListBase, tuple)):
        steps = range(len(value))
    else:
        return None
    for step in steps:
        try:
            child = value[step]
        except _cowstore.CorruptStoreError:
            return path + [step]
        found = _first_unreadable(child, path + [step])
        if found is not None:
            return found
    return None


def human_size(n):
    """1536 -> '1.5 KiB' (binary units, as du -h)."""
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"


def _size(n, exact):
    return str(n) if exact else human_size(n)


def _length(value):
    """What ls shows as a value's length: entries, characters, or a shape."""
    if is_ndarray(value):
        return "x".join(map(str, value.shape)) or "scalar"
    length = _length_json(value)
    return "-" if length is None else str(length)


def _length_json(value):
    """info --json's length: an int, an array's shape (a list), or None."""
    if is_ndarray(value):
        return list(value.shape)
    if isinstance(value, (DictBase, ListBase, SetBase, str, bytes, tuple)):
        return len(value)
    return None


def _kind(value):
    return f"ndarray[{value.dtype}]" if is_ndarray(value) else type_name(value)


def _children(value):
    """(step, child) of a dict or list, in its order, each step as ls prints
    it (a path step naming the child); None for anything else."""
    if isinstance(value, DictBase):
        return ((step_text(key, value), child) for key, child in value.items())
    if isinstance(value, ListBase):
        return ((str(i), child) for i, child in enumerate(value))
    return None


def _measure(*values):
    return _cowstore._measure(list(values))[0]


def _uncompressed_name(path):
    """x.jsonl.gz -> x.jsonl (the name that tells the format)."""
    base, ext = os.path.splitext(path)
    return base if ext.lower() in COMPRESSORS else path


class _NamedSink(io.RawIOBase):
    """A binary stream passing writes to `sink`, whose errors name the
    output as the user knows it ("standard output: No space left on
    device", not a bare errno).  A closed pipe stays a BrokenPipeError,
    which main() ends quietly."""

    def __init__(self, sink, name):
        super().__init__()
        self._sink, self._name = sink, name

    def writable(self):
        return True

    def write(self, data):
        return self._call(self._sink.write, data)

    def flush(self):
        self._call(self._sink.flush)

    def _call(self, method, *args):
        try:
            return method(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OSError(e.errno, e.strerror, self._name) from None


def _encoded(binary, name, compressor=None):
    """A UTF-8 text stream onto `binary` (compressed by `compressor`), whose
    write errors name `name`; closing it leaves `binary` open."""
    sink = _NamedSink(binary, name)
    if compressor is None:
        return io.TextIOWrapper(sink, encoding="utf-8", newline="\n", write_through=False)
    return compressor(sink, "wt", encoding="utf-8", newline="\n")


@contextlib.contextmanager
def _text_output(path=None):
    """A UTF-8 text stream, whatever the locale: stdout, or `path` written
    to a temporary file renamed into place on success (a failed export
    leaves no half file), compressed when its name ends in .gz, .bz2 or
    .xz.  Every command writes through it."""
    if path in (None, "-"):
        if sys.stdout is None:          # started with stdout closed (cowstore ls >&-)
            raise CliError("standard output is closed")
        with _encoded(sys.stdout.buffer, "standard output") as out:
            yield out
        return
    compressor = COMPRESSORS.get(os.path.splitext(path)[1].lower())
    target = _replaced_file(path)
    if target is None:
        with open(path, "wb") as raw, _encoded(raw, path, compressor) as out:
            yield out
        return
    temp = f"{target}.tmp-{os.getpid()}"
    try:
        try:
            raw = open(temp, "wb", buffering=OUTPUT_BUFFER)
        except OSError as e:            # named as the user named it, not the temporary file
            raise type(e)(e.errno, e.strerror, path) from None
        with raw, _encoded(raw, path, compressor) as out:
            yield out
        try:
            os.replace(temp, target)
        except OSError as e:
            raise type(e)(e.errno, e.strerror, path) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _replaced_file(path):
    """The file an output to `path` is renamed over: `path` with its
    symbolic links followed, so that a link keeps naming the new file.
    None when it must be written in place instead: a device or a pipe
    (/dev/null, a FIFO), or a file descriptor's link into /proc
    (/dev/stdout, /dev/fd/1), which names whatever the descriptor is open
    on -- renaming over any of them would replace it."""
    name = os.path.abspath(path)
    for _ in range(MAX_SYMLINKS):
        folder = os.path.realpath(os.path.dirname(name))
        if folder == "/proc" or folder.startswith("/proc/"):
            return None
        name = os.path.join(folder, os.path.basename(name))
        if not os.path.islink(name):
            break
        name = os.path.join(folder, os.readlink(name))
    else:
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
    if os.path.exists(name) and not os.path.isfile(name):
        return None
    return name


# -- commands ----------------------------------------------------------------

def cmd_info(args):
    with _open_store(args.store) as store:
        st = store.stats()
        roots = _roots(store)
        nodes = _cowstore._measure([v for _, v in roots]) if args.walk else None
        unfinished = len(store.reserved_names())
    with _text_output() as out:
        if args.json:
            _print_info_json(st, roots, nodes, unfinished, out)
        else:
            _print_info(st, roots, nodes, unfinished, out)
    return EXIT_OK


def _print_info_json(st, roots, nodes, unfinished, out):
    st["names"] = {n: {"type": _kind(v), "length": _length_json(v)} for n, v in roots}
    if nodes:
        st["nodes"], st["node_bytes"] = nodes[1], nodes[0]
    st["unfinished_imports"] = unfinished
    print(json.dumps(st, indent=2), file=out)


def _print_info(st, roots, nodes, unfinished, out):
    live = st["segment_bytes"]
    file_size = st["file_size"] or st["file_bytes"]
    lines = [
        ("store", st["path"]),
        ("format", f"cowstore format {st['format_version']}, LMDB page {st['page_size']} B"),
        ("file", f"{human_size(file_size)} ({file_size} B), "
                 f"{100 * live / file_size if file_size else 0:.1f}% live data"),
        ("live data", f"{human_size(live)} in {st['segments']} segments"),
    ]
    if nodes:
        lines.append(("nodes", f"{nodes[1]} ({human_size(nodes[0])} written alone)"))
    lines.append(("lmdb", f"map {human_size(st['map_bytes'])}, last transaction "
                          f"{st['last_txn']}, readers {st['readers_used']}/{st['readers_max']}, "
                          f"{st['free_pages']} free pages "
                          f"({human_size(st['free_pages'] * st['page_size'])}) for reuse"))
    if unfinished:
        lines.append(("unfinished", f"{unfinished} import(s) in progress or abandoned "
                                    "(compact removes abandoned ones)"))
    for label, text in lines:
        print(f"{label:<11} {text}", file=out)
    _print_db_table(st["lmdb"], out)
    print(f"{'roots':<11} {len(roots)}", file=out)
    for name, value in roots:
        print(f"  {_kind(value):<16} {_length(value):>10}  {step_text(name)}", file=out)


def _print_db_table(dbs, out):
    """LMDB's B-tree figures per database, as mdb_stat gives them."""
    fields = ("entries", "depth", "branch_pages", "leaf_pages", "overflow_pages")
    print("  " + f"{'database':<10}" + "".join(f"{f.split('_')[0]:>10}" for f in fields),
          file=out)
    for name, db in dbs.items():
        print("  " + f"{name:<10}" + "".join(f"{db[f]:>10}" for f in fields), file=out)


def cmd_ls(args):
    with _open_store(args.store) as store:
        if args.path:
            value, keys = resolve(store, args.path)
            entries = _children(value)
            if isinstance(value, SetBase):      # members have no path: no step to print
                entries = ((SET_MEMBER, member) for member in value)
            elif entries is None:
                entries = [(step_text(keys[-1]), value)]
        else:
            entries = [(step_text(n), v) for n, v in _roots(store)]
        with _text_output() as out, _naming_unreadable(*([(value, keys)] if args.path else [])):
            for step, child in entries:
                size = f" {_size(_measure(child), args.bytes):>10}" if args.long else ""
                print(f"{_kind(child):<16} {_length(child):>10}{size}  {step}", file=out)
    return EXIT_OK


def cmd_get(args):
    with _open_store(args.store) as store:
        value, keys = resolve(store, args.path)
        with _text_output() as out, _naming_unreadable((value, keys)):
            JsonWriter(out, args.indent, args.arrays).write(value, keys)
            out.write("\n")
    return EXIT_OK


def cmd_export(args):
    fmt = args.format
    if fmt == "auto":
        name = _uncompressed_name(args.file or "").lower()
        fmt = "jsonl" if name.endswith(JSONL_SUFFIXES) else "json"
    with _open_store(args.store) as store:
        value, keys = resolve(store, args.name)
        if fmt == "jsonl" and not isinstance(value, (ListBase, SetBase)):
            raise CliError(f"JSON Lines export needs a list; {args.name} is a "
                           f"{type_name(value)} (use --format json)")
        with _text_output(args.file) as out, _naming_unreadable((value, keys)):
            writer = JsonWriter(out, args.indent if fmt == "json" else None, args.arrays)
            if fmt == "json":
                writer.write(value, keys)
                out.write("\n")
            else:
                for i, item in enumerate(value):
                    writer.write(item, keys + [i])
                    out.write("\n")
    return EXIT_OK


def _progress_bar(args, raw):
    """A tqdm bar on stderr when it is a terminal, else None; `raw` is the
    input file (None for stdin: no total)."""
    if args.no_progress or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    total = None
    if raw is not None:
        total = os.fstat(raw.fileno()).st_size or None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"import {args.name}", file=sys.stderr)


def _open_input(path, stack):
    """(stream to parse, the file underneath or None for stdin), decompressing
    by suffix."""
    if path == "-":
        return sys.stdin.buffer, None
    raw = stack.enter_context(open(path, "rb"))
    opener = COMPRESSORS.get(os.path.splitext(path)[1].lower())
    return (raw if opener is None else stack.enter_context(opener(raw, "rb"))), raw


def cmd_import(args):
    source = "stdin" if args.file == "-" else args.file
    with contextlib.ExitStack() as stack:
        stream, raw = _open_input(args.file, stack)
        bar = _progress_bar(args, raw)
        if bar is not None:
            stack.callback(bar.close)
        store = stack.enter_context(_open_store(args.store, write=True, create=True))
        progress = None
        if bar is not None:     # the position in the file, compressed or not
            def progress(done):
                bar.update((raw.tell() if raw is not None else done) - bar.n)
        try:
            reader = open_reader(stream, _uncompressed_name(args.file), args.format)
            count = import_json(store, args.name, reader, replace=args.replace,
                                progress=progress, batch_bytes=args.batch_bytes)
        except JsonInputError as e:
            raise CliError(f"{source}: {e}; nothing was imported") from None
        except COMPRESSED_INPUT_ERRORS as e:
            if isinstance(e, _cowstore.CowstoreError) or stream is raw:
                raise
            raise CliError(f"{source}: {_error_message(e)}; nothing was imported") from None
        if sys.stderr.isatty():
            noun = {"array": "elements", "object": "keys", "lines": "lines"}
            print(f"imported {count} {noun.get(reader.kind, 'value')} into {args.name}",
                  file=sys.stderr)
    return EXIT_OK


class _PreviewFull(Exception):
    pass


class _LimitedText(io.StringIO):
    """Collects text until `limit` characters, then stops the writer."""

    def __init__(self, limit):
        super().__init__()
        self._left = limit

    def write(self, s):
        super().write(s)
        self._left -= len(s)
        if self._left < 0:
            raise _PreviewFull
        return len(s)


def _preview(value, full):
    """A changed value as diff shows it: compact JSON, cut unless `full`;
    arrays whole with `full`, else summarised with a digest of their data
    (two summaries alike would hide the change)."""
    text = _LimitedText(sys.maxsize if full else DIFF_PREVIEW)
    try:
        JsonWriter(text, None, "list" if full else "digest").write(value)
    except _PreviewFull:
        return text.getvalue()[:DIFF_PREVIEW - 3] + "..."
    except ValueError:
        return repr(value) if full else repr(value)[:DIFF_PREVIEW]
    return text.getvalue()


def cmd_diff(args):
    with _open_store(args.store) as store, _text_output() as out:
        old, old_keys = resolve(store, args.name1)
        new, new_keys = resolve(store, args.name2)
        with _naming_unreadable((old, old_keys), (new, new_keys)):
            changes = _print_diff(old, new, args.full, out)
    return EXIT_DIFF_CHANGES if changes else EXIT_OK


def _print_diff(old, new, full, out):
    """Prints the changes from old to new; returns how many."""
    changes = 0
    for change in diff(old, new):
        changes += 1
        path = join(change.path) or "(the whole value)"
        if change.old is MISSING:
            line = f"+ {path}: {_preview(change.new, full)}"
        elif change.new is MISSING:
            line = f"- {path}: {_preview(change.old, full)}"
        else:
            line = f"~ {path}: {_preview(change.old, full)} -> {_preview(change.new, full)}"
        print(line, file=out)
    return changes


def cmd_compact(args):
    if args.output and os.path.exists(args.output):
        raise CliError(f"{args.output} exists; --output writes a new store")
    with _open_store(args.store, write=True) as store:
        removed = remove_abandoned_imports(store)
        before = store.stats()
        store.compact()
        after = store.stats()
        if args.output:
            _copy_store(store, args.output)
    with _text_output() as out:
        print(f"live data {human_size(before['segment_bytes'])} -> "
              f"{human_size(after['segment_bytes'])}; file {human_size(after['file_size'])} "
              "(LMDB reuses the freed pages; --output writes a smaller copy)", file=out)
        if removed:
            print(f"removed {removed} abandoned import(s)", file=out)
        if args.output:
            print(f"wrote {args.output}: {human_size(os.path.getsize(args.output))}", file=out)
    return EXIT_OK


def _copy_store(store, path):
    """Writes store's roots to a new store at path, built under a temporary
    name beside it and renamed into place once complete, so a failure
    leaves nothing at path (and names path, not the temporary file).  A
    symbolic link at path is followed, as for an export."""
    target = _replaced_file(path)
    if target is None:
        raise CliError(f"{path}: a device, pipe or file descriptor cannot hold a store")
    temp = f"{target}.tmp-{os.getpid()}"
    try:
        # The source's write lock keeps writers out: the roots are one commit's.
        # One commit to the copy: what roots share is written once.
        with store.transaction(), Store(temp) as copy, copy.transaction():
            for name in store.names():
                copy[name] = store[name]
        os.replace(temp, target)
    except Exception as e:  # noqa: BLE001 -- reported as the copy's failure
        raise CliError(f"{path}: {_error_message(e)}") from None
    finally:
        _remove_files(temp)             # the lock file, and the copy if it failed


def cmd_du(args):
    with _open_store(args.store) as store:
        if args.path:
            value, keys = resolve(store, args.path)
            prefix = join(keys) + "/"
            entries = _children(value) or []   # a set's members have no path: its total only
            with _naming_unreadable((value, keys)):
                rows = [(_measure(child), prefix + step) for step, child in entries]
            total = (_measure(value), join(keys))
        else:
            roots = _roots(store)
            rows = [(_measure(v), join([n])) for n, v in roots]
            total = (_measure(*[v for _, v in roots]), "total (shared nodes counted once)")
    if args.sort:
        rows.sort(key=lambda row: -row[0])
    with _text_output() as out:
        for size, label in rows + [total]:
            print(f"{_size(size, args.bytes):>10}  {label}", file=out)
    return EXIT_OK


# -- the parser ----------------------------------------------------------------

def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    parser = argparse.ArgumentParser(
        prog="cowstore", parents=[common],
        description="Look into, load and maintain cowstore store files.",
        epilog="Paths name a root then keys and indices: train/rows/3/name "
               "(inside a step ~1 is /, ~0 is ~, ~{a} a newline, ~{} nothing; a "
               "step ~(None) names a key by its Python literal).  Exit status: 0 success, "
               "1 failure, 2 bad usage (diff: 0 same, 1 different, 2 failure).")
    parser.add_argument("--version", action="version",
                        version=f"cowstore {_package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help_text, **kw):
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text, **kw)
        p.set_defaults(run=func)
        p.add_argument("store", metavar="STORE", help="the store file (or directory)")
        return p

    p = command("info", cmd_info, "Roots, sizes, node and segment counts, LMDB figures.")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--no-walk", dest="walk", action="store_false",
                   help="skip counting nodes (which reads every node)")

    p = command("ls", cmd_ls, "List the entries at a path (the roots without one).")
    p.add_argument("path", metavar="PATH", nargs="?", help="e.g. train/rows/3")
    p.add_argument("-l", "--long", action="store_true", help="show each entry's size")
    p.add_argument("-b", "--bytes", action="store_true", help="sizes in bytes")

    p = command("get", cmd_get, "Print the value at a path as JSON.")
    p.add_argument("path", metavar="PATH", help="e.g. train/rows/3/name")
    _add_json_output_options(p)

    p = command("import", cmd_import, "Load JSON or JSON Lines into a root, streamed: "
                "all of it commits, or nothing.")
    p.add_argument("name", metavar="NAME", help="the root to create")
    p.add_argument("file", metavar="FILE",
                   help="the input file (.gz, .bz2, .xz: decompressed), or - for stdin")
    p.add_argument("--format", choices=("auto", "json", "jsonl"), default="auto",
                   help="auto: JSON Lines for .jsonl/.ndjson files or input whose first "
                        "line is a whole value followed by more; else JSON")
    p.add_argument("--replace", action="store_true", help="overwrite an existing root")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--batch-bytes", type=int, default=BATCH_BYTES, help=argparse.SUPPRESS)

    p = command("export", cmd_export, "Write a root as JSON or JSON Lines, streamed.")
    p.add_argument("name", metavar="NAME", help="a root (or a path into one)")
    p.add_argument("file", metavar="FILE", nargs="?",
                   help="output file (default stdout; .gz, .bz2, .xz: compressed)")
    p.add_argument("--format", choices=("auto", "json", "jsonl"), default="auto",
                   help="auto: JSON Lines for a .jsonl/.ndjson FILE, else JSON")
    _add_json_output_options(p)

    p = command("diff", cmd_diff, "List the paths that differ between two roots "
                "(+ added, - removed, ~ changed), skipping shared structure.")
    p.add_argument("name1", metavar="NAME1", help="a root (or a path into one)")
    p.add_argument("name2", metavar="NAME2", help="a root (or a path into one)")
    p.add_argument("--full", action="store_true", help="show whole values, not previews")

    p = command("compact", cmd_compact, "Rewrite the live data and free the rest.")
    p.add_argument("--output", metavar="NEW_STORE",
                   help="also write a compacted copy to a new store file (smaller file)")

    p = command("du", cmd_du, "Space per subtree: each entry at PATH (or each root) "
                "with the bytes its nodes take written alone.")
    p.add_argument("path", metavar="PATH", nargs="?")
    p.add_argument("-b", "--bytes", action="store_true", help="sizes in bytes")
    p.add_argument("--sort", action="store_true", help="largest first")
    return parser


def _add_json_output_options(p):
    p.add_argument("--indent", type=int, default=None, metavar="N",
                   help="pretty-print with N spaces per level")
    p.add_argument("--arrays", choices=("list", "summary"), default="list",
                   help="numpy arrays as nested lists, or as a one-string summary")


def _package_version():
    from . import __version__
    return __version__


def _error_message(exc):
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    if type(exc) is KeyError and exc.args:      # str(KeyError('r4')) is just "'r4'"
        return f"key {exc.args[0]!r} not found"
    text = str(exc) if not isinstance(exc, KeyError) or not exc.args else str(exc.args[0])
    text = " ".join(text.split()) or type(exc).__name__
    return text


def main(argv=None):
    """Runs one command; returns the exit status."""
    args = _parser().parse_args(argv)
    # Stored ints may have any number of digits: lift Python's guard against
    # slow int-to-str conversion (4300 digits) for this process, which only
    # prints what the user asked for.
    sys.set_int_max_str_digits(0)
    failure = EXIT_DIFF_FAILURE if args.command == "diff" else EXIT_FAILURE
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("cowstore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (cowstore get ... | head): stop quietly.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return failure
    except Exception as exc:  # noqa: BLE001 -- every failure is reported in one line
        if getattr(args, "debug", False):
            traceback.print_exc()
        else:
            print(f"cowstore: error: {_error_message(exc)}", file=sys.stderr)
        return failure


if __name__ == "__main__":
    sys.exit(main())
