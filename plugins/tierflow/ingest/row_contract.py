"""The row contract: what a valid row is, and the reason given for every row that is not.

One leaf, no database and no I/O: ``validate_row`` parses one record as received (strings from
CSV, native values from Parquet and JSON lines) into the row as loaded, or raises
``RowProblem`` whose message is the reject reason. All three load paths use it: the row path
on every record, the binary path on every row its vectorised checks do not accept as plainly
good, and the SQL path's set-based checks say the same things in SQL (docs/ingest.md). What the
checks look up (loaded keys for foreign keys, first fx rates, the base currency) comes through
the ``Lookups`` protocol, so each path answers from what it holds. Also here: the
duplicate-key message, the record as ``rejects.raw_record`` holds it (``raw_json``), and the
words and shapes the set-based and vectorised checks must agree with (``WHITESPACE``,
``PLAIN_DECIMAL``, ``TRUE_WORDS`` / ``FALSE_WORDS``).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Container
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Protocol

from tierflow.extracts import (
    BY_PATH,
    FIELD_LIMIT,
    INT4_MAX,
    INT4_MIN,
    NUMERIC_MAX_SCALE,
    NUMERIC_MAX_WEIGHT_DIGITS,
    Column,
    Entity,
)
from tierflow.ingest.readers import JsonNumber

# What Python's str.strip() removes: values are stripped so, and SQL trims the same characters.
WHITESPACE = "".join(ch for ch in map(chr, range(sys.maxunicode + 1)) if ch.isspace())
# a plain decimal, with or without exponent: the shape whose only fault can be its size
PLAIN_DECIMAL = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
TRUE_WORDS = ("true", "t", "1", "yes", "y")
FALSE_WORDS = ("false", "f", "0", "no", "n")
NUL_SHOWN_AS = "\u2400"  # what a NUL byte becomes in rejects.raw_record (jsonb cannot hold it)
_ISO_CURRENCY = re.compile(r"[A-Za-z]{3}")
_PLAIN_DECIMAL = re.compile(PLAIN_DECIMAL)
# the UTC offset at the end of an ISO timestamp as Python reads it: +HH, +HHMM, +HH:MM,
# +HH:MM:SS[.ffffff]; PostgreSQL stores offsets up to 15:59:59 and refuses a minute or second of
# 60 or more, and a fraction of a second
_OFFSET = re.compile(r"[+-](\d\d)(?::?(\d\d)(?::?(\d\d)(\.\d+)?)?)?$")
MAX_UTC_OFFSET = timedelta(hours=16)


# -- reject reasons ------------------------------------------------------------------------
# Each reason's words, written once: validate_row fills the {fields} with Python values, the
# SQL path (sql_path.py) with SQL expressions that give the same text. {value} is the
# value as Python's repr() shows it unless said otherwise.
MALFORMED = "malformed row: {problem}"
TOO_LONG = "{column}: a value of {length} characters, over the limit of {limit}"
NUL_BYTE = "{column}: NUL byte (PostgreSQL text cannot hold it; shown as " + NUL_SHOWN_AS + " in raw_record)"
NOT_ALLOWED = "{column}: {value} is not one of {allowed}"
BAD_VALUE = "bad {type} in {column}: {value}"
OUT_OF_NUMERIC_RANGE = BAD_VALUE + (
    f" (out of PostgreSQL's numeric range: {NUMERIC_MAX_WEIGHT_DIGITS} digits before the point,"
    f" {NUMERIC_MAX_SCALE} after)")
OUT_OF_INT_RANGE = BAD_VALUE + f" (out of the integer range {INT4_MIN}..{INT4_MAX})"
NEGATIVE = "negative {column}: {value}"  # the parsed value as text
NOT_POSITIVE = "{column} must be greater than 0: {value}"
MISSING = "missing required value: {columns}"
BEFORE = "{later} {later_value} is before {earlier} {earlier_value}"  # the dates as text
IN_FUTURE = "{column} {value} is in the future: more than {days} day(s) after the extract date {date}"
UNKNOWN_CURRENCY = "unknown currency {value}"  # upper-cased
NO_FX_RATE = "no fx rate for {currency} on or before {date}"  # as text
UNKNOWN_KEY = "unknown {column} {value}: no such {entity} row loaded"
DUPLICATE_KEY = "duplicate key ({columns}) = {key} also on line {line} of this file"


class RowProblem(ValueError):
    """One row cannot be loaded; the message is the reject reason."""


class Lookups(Protocol):
    """What ``validate_row`` looks up: the base currency, the loaded keys a foreign key must
    be among, and whether a currency has a rate on or before a date."""

    base: str

    def keys(self, entity: Entity, column: str) -> Container[object]: ...

    def has_rate(self, currency: str, on: date) -> bool: ...


def duplicate_key_message(entity: Entity, key: tuple, first_line: int) -> str:
    """The reject reason of a row whose parsed key an earlier line of the file has."""
    shown = key if len(key) > 1 else key[0]
    return DUPLICATE_KEY.format(columns=", ".join(entity.key), key=repr(shown), line=first_line)


# -- value parsing -------------------------------------------------------------------------
def _numeric_in_range(num: Decimal) -> bool:
    """Whether PostgreSQL's numeric takes this finite value: at most 131,072 digits before the
    point and 16,383 after (a zero may have any exponent that keeps its scale in range)."""
    exponent = num.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > NUMERIC_MAX_SCALE or abs(exponent) >= 2**30:
        return False
    return num.is_zero() or num.adjusted() < NUMERIC_MAX_WEIGHT_DIGITS


def _finite_number(value: object) -> Decimal:
    """A number as received as a finite Decimal PostgreSQL's numeric can hold; ValueError
    otherwise (NaN, the infinities, 1e400 in JSON, 1e200000 as text)."""
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError
    num = Decimal(str(value))
    if not num.is_finite() or not _numeric_in_range(num):
        raise ValueError
    return num


def _parse(col: Column, value: object) -> object:
    """Parse one value as received (str from CSV, native from Parquet/JSON) to its type."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
    try:
        if col.type == "text":
            text = str(value)
            if col.allowed is not None:
                text = text.lower()
                if text not in col.allowed:
                    raise RowProblem(NOT_ALLOWED.format(
                        column=col.name, value=repr(value), allowed=", ".join(col.allowed)))
            return text
        if col.type == "numeric":
            try:
                return _finite_number(value)
            except ValueError:
                if isinstance(value, str) and _looks_finite(value):
                    raise RowProblem(OUT_OF_NUMERIC_RANGE.format(
                        type=col.type, column=col.name, value=repr(value))) from None
                raise
        if col.type == "int":
            num = _finite_number(value)
            if num != num.to_integral_value():
                raise ValueError
            if num.adjusted() > 9 or not INT4_MIN <= int(num) <= INT4_MAX:
                raise RowProblem(OUT_OF_INT_RANGE.format(type=col.type, column=col.name, value=repr(value)))
            return int(num)
        if col.type == "date":
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            try:
                return date.fromisoformat(str(value))
            except ValueError:
                # a full timestamp in a date column is accepted; anything else is not
                return _timestamp(str(value)).date()
        if col.type == "timestamp":
            if isinstance(value, datetime):
                return value
            if isinstance(value, date):
                return datetime(value.year, value.month, value.day)
            return _timestamp(str(value))
        if col.type == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in TRUE_WORDS:
                return True
            if text in FALSE_WORDS:
                return False
            raise ValueError
    except RowProblem:
        raise
    except (ValueError, InvalidOperation, TypeError):
        raise RowProblem(BAD_VALUE.format(type=col.type, column=col.name, value=repr(value))) from None
    raise AssertionError(f"unknown column type {col.type}")


def _timestamp(text: str) -> datetime:
    """An ISO timestamp as ``datetime.fromisoformat`` reads it, but only with a UTC offset
    PostgreSQL can store: within 16 hours, its minutes and seconds below 60, no fraction of a
    second (Python reads ``+08:60`` as +09:00 and takes ``+23:00``; PostgreSQL refuses both, so
    the text COPY of the row path failed the whole file). ValueError otherwise."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None:
        offset = _OFFSET.search(text)
        if offset is not None:
            _, minutes, seconds, fraction = offset.groups()
            if fraction or any(int(part) >= 60 for part in (minutes, seconds) if part):
                raise ValueError
        if abs(value.utcoffset()) >= MAX_UTC_OFFSET:
            raise ValueError
    return value


def _looks_finite(text: str) -> bool:
    """A plain decimal, with or without exponent: the shape whose only fault can be its size
    (the set-based path tells it apart with the same pattern)."""
    return _PLAIN_DECIMAL.fullmatch(text) is not None


def _value_problem(name: str, value: object) -> str | None:
    """What PostgreSQL (or the CSV reader) could not take in a value as received, whatever
    its column: a field over FIELD_LIMIT characters, a NUL character (also inside a JSON
    object or list of an unknown column)."""
    if isinstance(value, str):
        if len(value) > FIELD_LIMIT:
            return TOO_LONG.format(column=name, length=len(value), limit=FIELD_LIMIT)
        if "\x00" in value:
            return NUL_BYTE.format(column=name)
    elif isinstance(value, dict):
        for k, v in value.items():
            problem = _value_problem(name, k) or _value_problem(name, v)
            if problem:
                return problem
    elif isinstance(value, list):
        for v in value:
            problem = _value_problem(name, v)
            if problem:
                return problem
    return None


def validate_row(
    entity: Entity, record: dict, lookups: Lookups, business_date: date, max_future_days: int
) -> dict:
    """The row as loaded, or RowProblem with the reason. Every rule a critical raw expectation
    enforces is enforced here too (expectations/raw; tests/test_ingest_poison.py checks that),
    so a row the raw gate would refuse never reaches raw to block later nights."""
    if "__malformed__" in record:
        raise RowProblem(MALFORMED.format(problem=record["__malformed__"]))
    for name, value in record.items():
        problem = _value_problem(name, value)
        if problem:
            raise RowProblem(problem)
    row: dict = {}
    missing: list[str] = []
    for col in entity.columns:
        value = _parse(col, record.get(col.name))
        if value is None and col.required:
            missing.append(col.name)
        if value is not None and (col.non_negative or col.positive):
            if col.non_negative and value < 0:
                raise RowProblem(NEGATIVE.format(column=col.name, value=value))
            if col.positive and value <= 0:
                received = record.get(col.name)
                received = received.strip() if isinstance(received, str) else received
                raise RowProblem(NOT_POSITIVE.format(column=col.name, value=repr(received)))
        row[col.name] = value
    if missing:
        raise RowProblem(MISSING.format(columns=", ".join(missing)))
    for earlier, later in entity.ordered_dates:
        if row[earlier] is not None and row[later] is not None and row[later] < row[earlier]:
            raise RowProblem(BEFORE.format(
                later=later, later_value=row[later], earlier=earlier, earlier_value=row[earlier]))
    if entity.event_date_column:
        v = row[entity.event_date_column]
        v = v.date() if isinstance(v, datetime) else v
        if v is not None and v > business_date + timedelta(days=max_future_days):
            raise RowProblem(IN_FUTURE.format(
                column=entity.event_date_column, value=v, days=max_future_days, date=business_date))
    currency_column = entity.iso_currency_column
    if currency_column:
        received = str(row[currency_column])
        cur = received.upper()
        row[currency_column] = cur
        # three ASCII letters, as the raw suites' ^[A-Z]{3}$ wants them (isalpha() took 'ÄÖÜ')
        if not _ISO_CURRENCY.fullmatch(received):
            raise RowProblem(UNKNOWN_CURRENCY.format(value=repr(cur)))
        if entity.currency_column:
            on = row[entity.currency_date_column]
            if cur != lookups.base and not lookups.has_rate(cur, on):
                raise RowProblem(NO_FX_RATE.format(currency=cur, date=on))
    for fk in entity.foreign_keys:
        v = row[fk.column]
        if v is not None and v not in lookups.keys(BY_PATH[fk.entity], fk.ref_column):
            raise RowProblem(UNKNOWN_KEY.format(column=fk.column, value=repr(v), entity=fk.entity))
    return row


def jsonable(v: object) -> object:
    """A value as JSON can hold it in raw_record / _extra: dates and numbers as text, NaN and
    the infinities as the text they were read from (JSON has no such numbers), a NUL as
    NUL_SHOWN_AS (jsonb cannot hold it)."""
    if isinstance(v, date | datetime | Decimal):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v) if isinstance(v, JsonNumber) else {"nan": "NaN", "inf": "Infinity"}.get(
            str(v), "-Infinity")
    if isinstance(v, str):
        return v.replace("\x00", NUL_SHOWN_AS) if "\x00" in v else v
    if isinstance(v, dict):
        return {jsonable(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


def raw_json(record: dict) -> str:
    """The record as received, as ``rejects.raw_record`` holds it (a malformed row: its fields)."""
    if "__malformed__" in record:
        return json.dumps({"fields": [jsonable(v) for v in record["__fields__"]]}, ensure_ascii=False)
    return json.dumps({jsonable(k): jsonable(v) for k, v in record.items()}, ensure_ascii=False)
