"""Streaming readers for the landing formats: csv, csv.gz, parquet, jsonl.

Each reader yields ``(line_number, record)`` where record maps the (normalized) header to
the value as received. Nothing reads a whole file into memory.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

FORMATS = (".csv.gz", ".csv", ".parquet", ".jsonl")


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


def _csv_rows(text: io.TextIOBase) -> tuple[list[str], Iterator[tuple[int, dict]]]:
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        raise FileProblem("empty file: no header row") from None
    except csv.Error as exc:
        raise FileProblem(f"not a readable CSV header: {exc}") from None
    columns = [normalize_header(h) for h in header]
    if not any(columns):
        raise FileProblem("empty header row")
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise FileProblem(f"header repeats column(s) {', '.join(dupes)}")

    def rows() -> Iterator[tuple[int, dict]]:
        start = reader.line_num + 1
        for fields in reader:
            line = start
            start = reader.line_num + 1
            if not fields:  # blank line
                continue
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


def _json_record(line: str, n: int) -> dict:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return {"__malformed__": f"not valid JSON: {exc.msg}", "__fields__": [line.rstrip("\n")]}
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
