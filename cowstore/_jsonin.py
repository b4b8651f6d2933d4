"""Reading JSON and JSON Lines as a stream of top-level items.

A JSON file larger than memory is almost always one big array or object of
small records, or JSON Lines.  So the reader streams the top level only: an
array yields its elements, an object its (key, value) pairs, JSON Lines its
lines; each item is parsed whole by the standard library's C scanner
(``JSONDecoder.raw_decode``), which is fast and exact.  Memory stays at one
read chunk plus the largest item.

Every syntax error becomes a :class:`JsonInputError` carrying the line and
column (1-based, counted in characters) where it was found.
"""
import codecs
import json
import re

# Bytes read from the input at a time.
READ_CHUNK = 1 << 20
# Bytes looked at to tell JSON from JSON Lines.
SNIFF_BYTES = 1 << 20
# An item that fails to parse this close to the end of the text read so far
# may just be cut off by the chunk boundary ("tru", "1.5e", "\u00"): read
# more and retry.  Farther from the end, the error is real.
_CUT_OFF_MARGIN = 8
# Extensions that mean JSON Lines when --format is auto.
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")

_WHITESPACE = re.compile(r"[ \t\n\r]*")


class JsonInputError(ValueError):
    """Malformed input, with the position of the error."""

    def __init__(self, msg, line, column):
        msg = msg[:-len(" at")] if msg.endswith(" at") else msg    # json's "... character at"
        super().__init__(f"{msg} at line {line} column {column}")
        self.line, self.column = line, column


class _Text:
    """Decoded text read ahead from a binary stream, with line and column
    bookkeeping for the text already dropped."""

    def __init__(self, stream):
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0                # next unread character of buf
        self.eof = False
        self.bytes_read = 0
        self._line = 1              # line and column of buf[0]
        self._column = 1
        self._first = True

    def more(self, pending=0):
        """Reads one more chunk into buf (False at end of input).  `pending`:
        characters of one item already read and still incomplete; at least
        as many bytes again are read, so an item of n bytes is parsed about
        log2(n / READ_CHUNK) times, not n / READ_CHUNK times (quadratic)."""
        if self.eof:
            return False
        chunk = self._stream.read(max(READ_CHUNK, pending))
        self.bytes_read += len(chunk)
        if self.pos > len(self.buf) // 2:
            self._drop_consumed()
        try:
            text = self._decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as e:
            # Positioned after the chunk's valid start (e.start counts bytes
            # the decoder held back from the previous chunk too: close enough).
            self.buf += chunk[:e.start].decode("utf-8", "ignore")
            raise self.error(f"invalid UTF-8 ({e.reason})", len(self.buf)) from None
        if self._first:
            self._first = False
            text = text[1:] if text.startswith("\ufeff") else text   # a byte-order mark
        self.buf += text
        self.eof = not chunk
        return bool(chunk) or bool(text)

    def _drop_consumed(self):
        line, column = self.position(self.pos)
        self.buf, self.pos = self.buf[self.pos:], 0
        self._line, self._column = line, column

    def position(self, index):
        """(line, column) of buf[index]."""
        newlines = self.buf.count("\n", 0, index)
        if newlines == 0:
            return self._line, self._column + index
        return self._line + newlines, index - self.buf.rfind("\n", 0, index)

    def error(self, msg, index):
        return JsonInputError(msg, *self.position(index))

    def skip_whitespace(self):
        """Moves past whitespace; returns the next character ('' at the end)."""
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos:self.pos + 1]

    def expect(self, chars, what):
        c = self.skip_whitespace()
        if not c or c not in chars:
            found = repr(c) if c else "the end of the input"
            raise self.error(f"expected {what}, found {found}", self.pos)
        self.pos += 1
        return c


class JsonReader:
    """Top-level items of a JSON or JSON Lines stream (binary, UTF-8).

    ``kind`` is "array", "object", "scalar" or "lines"; iterate to get the
    items: values, or (key, value) pairs for an object (a key the text
    repeats comes each time: setting the pairs in order gives what
    json.loads gives, the last value at the first place).  ``bytes_read``
    follows the input for progress bars.
    """

    def __init__(self, stream, fmt="json"):
        self._text = _Text(stream)
        self._decoder = json.JSONDecoder()
        if fmt == "jsonl":
            self.kind = "lines"
        else:
            c = self._text.skip_whitespace()
            if not c:
                raise self._text.error("expected a JSON value, found the end of the input",
                                       self._text.pos)
            self.kind = {"[": "array", "{": "object"}.get(c, "scalar")

    @property
    def bytes_read(self):
        return self._text.bytes_read

    def __iter__(self):
        if self.kind == "lines":
            yield from self._lines()
            return
        if self.kind == "scalar":
            yield self._value()
        else:
            yield from self._members()
        if self._text.skip_whitespace():
            raise self._text.error("extra data after the JSON value (JSON Lines needs "
                                   "--format jsonl)", self._text.pos)

    def _members(self):
        t = self._text
        is_object = self.kind == "object"
        close = "}" if is_object else "]"
        t.expect("{" if is_object else "[", "'{' or '['")
        if t.skip_whitespace() == close:
            t.pos += 1
            return
        while True:
            if is_object:
                if t.skip_whitespace() != '"':
                    t.expect('"', "a property name in double quotes")
                key = self._value()
                t.expect(":", "':'")
                yield key, self._value()
            else:
                yield self._value()
            if t.expect("," + close, f"',' or '{close}'") == close:
                return

    def _value(self):
        """Parses the value at the read position, reading more input while
        it may be cut off by the end of what was read.  (more() may move the
        buffer: no index is kept across it.)"""
        t = self._text
        t.skip_whitespace()
        while True:
            try:
                value, end = self._decoder.raw_decode(t.buf, t.pos)
            except json.JSONDecodeError as e:
                if t.eof or not self._maybe_cut_off(e):
                    raise t.error(e.msg, e.pos) from None
                t.more(len(t.buf) - t.pos)
                continue
            # A number ending near the end of the text read may go on ("0" of
            # "0.5" parses as 0 while ".5" is still unread).
            if end > len(t.buf) - _CUT_OFF_MARGIN and not t.eof:
                t.more(len(t.buf) - t.pos)
                continue
            t.pos = end
            return value

    def _maybe_cut_off(self, e):
        t = self._text
        return e.msg.startswith("Unterminated string") or e.pos >= len(t.buf) - _CUT_OFF_MARGIN

    def _lines(self):
        t = self._text
        scanned = 0                 # characters of the line at t.pos known to hold no newline
        while True:
            nl = t.buf.find("\n", t.pos + scanned)
            if nl < 0:
                scanned = len(t.buf) - t.pos
                if t.more(scanned):
                    continue
                nl = len(t.buf)
                if t.pos >= nl:
                    return
            line = t.buf[t.pos:nl]
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise t.error(e.msg, t.pos + e.pos) from None
            t.pos, scanned = nl + 1, 0


class _Prefixed:
    """A binary stream with `head` (already read from it) put back in front."""

    def __init__(self, head, stream):
        self._head, self._stream = head, stream

    def read(self, n):
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._stream.read(n)


def open_reader(stream, name, fmt="auto"):
    """A JsonReader for a binary stream named `name` (a path, or '-');
    fmt 'auto' picks JSON Lines by extension or by sniffing the first line."""
    if fmt == "auto":
        head = stream.read(SNIFF_BYTES)
        fmt = sniff_format(name, head)
        stream = _Prefixed(head, stream)
    return JsonReader(stream, fmt)


def sniff_format(path, head):
    """'json' or 'jsonl' for --format auto: the file name's extension, else
    whether the first line is a complete value with more text after it."""
    if path.lower().endswith(JSONL_SUFFIXES):
        return "jsonl"
    first, _, rest = head.partition(b"\n")
    if not rest.strip():
        return "json"
    try:
        json.loads(first)
    except ValueError:
        return "json"
    return "jsonl"
