"""Streaming readers for the landing formats: csv, csv.gz, parquet, jsonl.

Each reader yields ``(line_number, record)`` where record maps the (normalized) header to
the value as received. Nothing reads a whole file into memory.

CSV records are counted against the physical lines they take: a quoted value that runs on
over lines which hold records of their own (an unbalanced quote) does not swallow them. The
line that opened it becomes a malformed row (the loader rejects it) and the lines after it
are read again as their own records; if they do not look like records, the file fails
naming the line of the quote.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import math
import sys
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path

FORMATS = (".csv.gz", ".csv", ".parquet", ".jsonl")
# A record spanning several lines is given up on (see _Lines) past this many characters: an
# unbalanced quote must not read the rest of a big file into one field.
RUNAWAY_CHARS = 32 * 131_072
# The csv module's own limit (131,072 characters a field) would fail the whole file on one
# long field; the loader rejects such a field per row instead (extracts.FIELD_LIMIT), and
# _Lines bounds a record spanning lines. The limit is the module's, for the whole process.
csv.field_size_limit(max(csv.field_size_limit(), sys.maxsize))


class FileProblem(ValueError):
    """The whole file cannot be read; the message says why (the caller adds the path)."""


def file_format(path: Path) -> str | None:
    name = path.name.lower()
    for ext in FORMATS:
        if name.endswith(ext):
            return ext.lstrip(".")
    return None


def normalize_header(name: str) -> str:
    return name.replace("\ufeff", "").strip().lower()


def open_bytes(path: Path):
    """The file's bytes, decompressed on the fly for csv.gz (the CSV load paths stream them)."""
    return gzip.open(path, "rb") if file_format(path) == "csv.gz" else open(path, "rb")  # noqa: SIM115


def read_csv_header(path: Path, encoding: str) -> tuple[list[str], bytes] | None:
    """The normalized header of a CSV file and its raw bytes, or None when only the row path
    can judge it (empty, a quoted newline, bytes that do not decode, a repeated column)."""
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    try:
        with open_bytes(path) as fh:
            first = fh.readline()
    except (OSError, EOFError, zlib.error):
        return None
    if not first or first.count(b'"') % 2:
        return None  # empty, or a header with a quoted newline
    try:
        text = first.decode(codec)
    except UnicodeDecodeError:
        return None
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        return None
    columns = [normalize_header(f) for f in fields]
    if not any(columns) or len(set(columns)) != len(columns):
        return None
    return columns, first


class _Runaway(Exception):
    """A record's lines grew past RUNAWAY_CHARS."""


class _Lines:
    """The physical lines of a text file for csv.reader, numbered from 1, remembering the lines
    of the record being read; lines can be put back to be read again as records."""

    def __init__(self, text: io.TextIOBase) -> None:
        self._text = iter(text)
        self._back: deque[tuple[int, str]] = deque()
        self._next_no = 1
        self.taken: list[tuple[int, str]] = []
        self._taken_chars = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._back:
            no, line = self._back.popleft()
        else:
            line = next(self._text)
            no = self._next_no
            self._next_no += 1
        if self.taken and self._taken_chars + len(line) > RUNAWAY_CHARS:
            self._back.appendleft((no, line))
            raise _Runaway
        self.taken.append((no, line))
        self._taken_chars += len(line)
        return line

    def start_record(self) -> None:
        self.taken = []
        self._taken_chars = 0

    def put_back(self, lines: list[tuple[int, str]]) -> None:
        self._back.extendleft(reversed(lines))


def _alone(line: str) -> list[str]:
    """The fields of one physical line read as a record by itself."""
    return next(csv.reader([line.rstrip("\r\n")]), [])


def _strict_ok(lines: list[tuple[int, str]]) -> bool:
    try:
        list(csv.reader([line for _, line in lines], strict=True))
    except csv.Error:
        return False
    return True


def _swallows_records(lines: list[tuple[int, str]], width: int) -> bool:
    """Whether a record read over several lines took in lines that are records of their own:
    a line inside it with the header's number of fields, or a last line with the header's
    number of fields where the quoting is broken (a quote that never closes, or closes
    before something other than a delimiter). A real multi-line value (an address) has
    neither."""
    if any(len(_alone(line)) == width for _, line in lines[1:-1]):
        return True
    return len(_alone(lines[-1][1])) == width and not _strict_ok(lines)


def _csv_rows(text: io.TextIOBase) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    lines = _Lines(text)
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise FileProblem("empty file: no header row") from None
    except _Runaway:
        raise FileProblem(f"not a readable CSV header: longer than {RUNAWAY_CHARS} characters") from None
    except csv.Error as exc:
        raise FileProblem(f"not a readable CSV header: {exc}") from None
    columns = [normalize_header(h) for h in header]
    if not any(columns):
        raise FileProblem("empty header row")
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise FileProblem(f"header repeats column(s) {', '.join(dupes)}")

    def unbalanced(taken: list[tuple[int, str]]) -> dict:
        """The opening line of a record that swallowed others, as a malformed row."""
        fields = _alone(taken[0][1])
        at = len(fields) - 1
        name = columns[at] if 0 <= at < len(columns) else f"field {at + 1}"
        first, last = taken[1][0], taken[-1][0]
        over = (f"line {first}, a record of its own, which is read as such" if first == last else
                f"lines {first}-{last}, records of their own, which are read as such")
        return {
            "__malformed__": f"unbalanced quote in {name}: its quoted value would run on over {over}",
            "__fields__": fields,
        }

    def rows() -> Iterator[tuple[int, dict]]:
        nonlocal reader
        while True:
            lines.start_record()
            try:
                fields = next(reader)
            except StopIteration:
                return
            except _Runaway:
                taken = lines.taken
                if not _swallows_records(taken, len(columns)):
                    raise FileProblem(
                        f"unbalanced quote on line {taken[0][0]}: its quoted value runs on for more than "
                        f"{RUNAWAY_CHARS} characters (lines {taken[0][0]}-{taken[-1][0]} and on)"
                    ) from None
                fields = None
            taken = lines.taken
            if fields is None or (len(taken) > 1 and _swallows_records(taken, len(columns))):
                yield taken[0][0], unbalanced(taken)
                lines.put_back(taken[1:])
                reader = csv.reader(lines)  # a fresh reader: the old one is inside a quote
                continue
            if not fields:  # blank line
                continue
            line = taken[0][0]
            if len(fields) != len(columns):
                # keep the row: the loader rejects it with this reason
                yield line, {"__malformed__": f"{len(fields)} fields, header has {len(columns)}",
                             "__fields__": fields}
                continue
            yield line, dict(zip(columns, fields, strict=True))

    return columns, rows()


def open_records(path: Path, encoding: str) -> tuple[list[str], Iterator[tuple[int, dict]], object]:
    """Open ``path``; return (columns, record iterator, closeable)."""
    fmt = file_format(path)
    if fmt is None:
        raise FileProblem(f"unsupported file type (expected one of {', '.join(FORMATS)})")
    # utf-8-sig accepts a byte-order mark; other encodings are taken as configured
    enc = "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding
    if fmt in ("csv", "csv.gz"):
        raw = gzip.open(path, "rb") if fmt == "csv.gz" else open(path, "rb")  # noqa: SIM115
        text = io.TextIOWrapper(raw, encoding=enc, errors="strict", newline="")
        try:
            cols, rows = _csv_rows(text)
        except UnicodeDecodeError as exc:
            text.close()
            raise FileProblem(f"cannot decode as {encoding}: {exc.reason} at byte {exc.start}") from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            text.close()
            raise FileProblem(f"cannot read: {exc}") from None
        return cols, rows, text
    if fmt == "jsonl":
        fh = open(path, encoding=enc, newline="")  # noqa: SIM115
        return _jsonl(fh)
    return _parquet(path)


def _jsonl(fh) -> tuple[list[str], Iterator[tuple[int, dict]], object]:
    """JSON lines: the columns are the keys of the first valid object (later lines may add
    keys; the loader keeps those aside). Malformed lines before it are kept as rejects."""
    head: list[tuple[int, dict]] = []
    first_no = 0
    try:
        for first_no, line in enumerate(fh, start=1):  # noqa: B007
            if line.strip():
                record = _json_record(line, first_no)
                head.append((first_no, record))
                if "__malformed__" not in record:
                    break
    except UnicodeDecodeError as exc:
        fh.close()
        raise FileProblem(f"cannot decode: {exc.reason} at byte {exc.start}") from None
    valid = [r for _, r in head if "__malformed__" not in r]
    if not head:
        fh.close()
        raise FileProblem("empty file: no records")
    columns = list(valid[0]) if valid else []

    def rows() -> Iterator[tuple[int, dict]]:
        yield from head
        for n, line in enumerate(fh, start=first_no + 1):
            if line.strip():
                yield n, _json_record(line, n)

    return columns, rows(), fh


class JsonNumber(float):
    """A JSON number no float64 holds (NaN, Infinity, -Infinity, 1e400), with the text it was
    written as: the loader rejects it in a number column, and messages and raw_record show
    that text (JSON itself has no such values)."""

    text: str

    def __new__(cls, text: str) -> JsonNumber:
        obj = super().__new__(cls, text)
        obj.text = text
        return obj

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def _json_float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else JsonNumber(text)


def _json_record(line: str, n: int) -> dict:
    try:
        obj = json.loads(line, parse_constant=JsonNumber, parse_float=_json_float)
    except json.JSONDecodeError as exc:
        return {"__malformed__": f"not valid JSON: {exc.msg}", "__fields__": [line.rstrip("\n")]}
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        return {"__malformed__": f"not valid JSON: {exc}", "__fields__": [line.rstrip("\n")]}
    if not isinstance(obj, dict):
        return {"__malformed__": "JSON line is not an object", "__fields__": [line.rstrip("\n")]}
    return {normalize_header(k): v for k, v in obj.items()}


def _parquet(path: Path) -> tuple[list[str], Iterator[tuple[int, dict]], object]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise FileProblem(f"not a readable Parquet file: {exc}") from None
    names = [normalize_header(n) for n in pf.schema_arrow.names]

    def rows() -> Iterator[tuple[int, dict]]:
        n = 0
        for batch in pf.iter_batches(batch_size=20_000):
            cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            for values in zip(*cols, strict=True):
                n += 1
                yield n, dict(zip(names, values, strict=True))

    return names, rows(), pf
