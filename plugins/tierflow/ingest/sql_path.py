"""The SQL path for CSV files: stream the bytes into COPY, validate set-based in SQL.

The loader gives a CSV file to this path when the binary path (``binary_path.py``) hands it
back: another encoding than UTF-8, a session not in UTC, a file pyarrow refuses, or too many
rows that would need checking one by one. Why in SQL rather than row by row: parsing and
checking every row in Python and COPYing it row by row is correct but an order of magnitude
slower than PostgreSQL's own COPY. Here Python only reads the header; the file's bytes
(decompressed on the fly for csv.gz) go straight into a COPY into an unlogged staging table
of text columns, numbered in file order by an identity column. The checks of
``row_contract.validate_row`` are then one SQL statement over the staging table
(``pg_input_is_valid`` and LIKE guards for types, left joins against the raw tables for
foreign keys, the first fx rate per currency), a hash aggregate finds duplicate keys, and the
good rows are cast into the raw table and the bad ones go to ``rejects`` with the same
reasons and line numbers, all inside the file's transaction. docs/ingest.md has the design
and the benchmark figures.

Line numbers: record n of the file (header = line 1) is reported as line n + 1. That is the
physical line only when no record spans several lines, so this path counts the file's
newlines while streaming and hands any file where the counts differ (quoted newlines, blank
lines) back to the row-by-row path, which reports each record's first physical line. It
does the same for anything COPY itself refuses (a row with the wrong number of fields, bytes
that do not decode, ...) and for unusual headers: the row path then gives the exact reject or
error it always gave. Such files are rare and only cost a second read.
"""

from __future__ import annotations

import codecs
import logging
import re
import string
import time
import zlib
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

from tierflow.extracts import (
    BY_PATH,
    FIELD_LIMIT,
    INT4_MAX,
    INT4_MIN,
    Column,
    Entity,
)
from tierflow.ingest.file_load import FileLoad, PathResult, UseRowPath
from tierflow.ingest.readers import open_bytes, read_csv_header
from tierflow.ingest.rejects import insert_rejects_from
from tierflow.ingest.row_contract import (
    BAD_VALUE,
    BEFORE,
    FALSE_WORDS,
    IN_FUTURE,
    MISSING,
    NEGATIVE,
    NO_FX_RATE,
    NOT_ALLOWED,
    NOT_POSITIVE,
    OUT_OF_INT_RANGE,
    OUT_OF_NUMERIC_RANGE,
    PLAIN_DECIMAL,
    TOO_LONG,
    TRUE_WORDS,
    UNKNOWN_CURRENCY,
    UNKNOWN_KEY,
    WHITESPACE,
    duplicate_key_message,
)
from tierflow.settings import META_SCHEMA, RAW_SCHEMA

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per COPY write: memory stays flat whatever the file size

# Python codec name -> PostgreSQL encoding name, for COPY's ENCODING option.
PG_ENCODINGS = {
    "utf-8": "UTF8",
    "gbk": "GBK",
    "gb18030": "GB18030",
    "big5": "BIG5",
    "shift_jis": "SJIS",
    "euc_jp": "EUC_JP",
    "euc_kr": "EUC_KR",
    "iso8859-1": "LATIN1",
    "iso8859-2": "LATIN2",
    "iso8859-15": "LATIN9",
    "cp1250": "WIN1250",
    "cp1251": "WIN1251",
    "cp1252": "WIN1252",
    "koi8-r": "KOI8R",
}

# Byte sequences after which a UTF-8 file may hold a value with whitespace to strip: ASCII
# white space at a field's edge, or any other character str.strip() removes. A file without
# any of them is loaded without the (costly) btrim on every value.
_EDGE_SPACE = (b" ,", b", ", b' "', b'" ', b" \n", b" \r", b"\n ", b"\t", b"\x0b", b"\x0c",
               b"\x1c", b"\x1d", b"\x1e", b"\x1f", b"\xc2\x85", b"\xc2\xa0", b"\xe1\x9a\x80",
               b"\xe2\x81\x9f", b"\xe3\x80\x80")
_E2_SPACE = re.compile(b"\xe2\x80[\x80-\x8a\xa8\xa9\xaf]")

def _lit(value: object) -> sql.Composable:
    return sql.Literal(value)


def _repr(expr: sql.Composable) -> sql.Composable:
    """SQL for Python's repr() of a string, as the row path's messages show values."""
    return sql.SQL(
        "(case when strpos({e}, '''') > 0 and strpos({e}, '\"') = 0 then '\"' || {e} || '\"'"
        " else '''' || replace(replace({e}, '\\', '\\\\'), '''', '\\''') || '''' end)"
    ).format(e=expr)


def _reason(template: str, **fields: object) -> sql.Composable:
    """A reject reason of the row contract as SQL giving its text: the template's words as
    literals, each {field} the SQL expression given for it (or a literal of a plain value)."""
    parts: list[sql.Composable] = []
    for words, name, _, _ in string.Formatter().parse(template):
        if words:
            parts.append(_lit(words))
        if name is not None:
            value = fields[name]
            parts.append(value if isinstance(value, sql.Composable) else _lit(str(value)))
    return sql.SQL("({})").format(sql.SQL(" || ").join(parts))


def _plain_number(t: sql.Composable) -> sql.Composable:
    """What PostgreSQL reads as a number but Python's Decimal does not: NaN and the
    infinities (every spelling has an n) and 0x / 0o / 0b literals. LIKE, not a regular
    expression: it runs on every value of every row, and PostgreSQL's regexes are slow."""
    letters = "('x', 'X', 'o', 'O', 'b', 'B')"
    return sql.SQL(
        "({t} not like '%n%' and {t} not like '%N%' and (({t} not like '0%' and {t} not like '_0%')"
        " or (substr({t}, 2, 1) not in {l} and substr({t}, 3, 1) not in {l})))"
    ).format(t=t, l=sql.SQL(letters))


def pg_encoding(encoding: str) -> str | None:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return None
    return PG_ENCODINGS.get(name)


class _Timer:
    """Seconds per step, for the debug log (and the benchmark's notes)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append((name, now - self.last))
        self.last = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {secs:.2f}s" for name, secs in self.laps)


class _Sql:
    """SQL fragments for one file: its columns as found in the header."""

    def __init__(self, entity: Entity, columns: list[str], base_currency: str, trim: bool) -> None:
        self.trim = trim
        self.entity = entity
        self.columns = columns
        self.base = base_currency
        self.pos = {c: i for i, c in enumerate(columns)}

    def raw(self, name: str) -> sql.Composable:
        return sql.Identifier(f"c{self.pos[name]}")

    def t(self, name: str) -> sql.Composable:
        """The value as the row path sees it: stripped, '' as null (null when no column)."""
        if name not in self.pos:
            return sql.SQL("null::text")
        return sql.Identifier(f"t_{self.pos[name]}")

    def trims(self) -> sql.Composable:
        if not self.trim:  # no value has white space to strip (see _EDGE_SPACE)
            return sql.SQL(", ").join(
                sql.SQL("nullif(s.{c}, '') as {t}").format(c=self.raw(c), t=sql.Identifier(f"t_{i}"))
                for i, c in enumerate(self.columns)
                if c in self.entity.column_names
            )
        return sql.SQL(", ").join(
            sql.SQL("nullif(btrim(s.{c}, {ws}), '') as {t}").format(
                c=self.raw(c), ws=_lit(WHITESPACE), t=sql.Identifier(f"t_{i}")
            )
            for i, c in enumerate(self.columns)
            if c in self.entity.column_names
        )

    # -- checks, in the order the row path makes them ------------------------------------------
    def type_problems(self, col: Column) -> list[tuple[sql.Composable, sql.Composable]]:
        t = self.t(col.name)
        shown = {"type": col.type, "column": col.name, "value": _repr(t)}
        bad = _reason(BAD_VALUE, **shown)
        out: list[tuple[sql.Composable, sql.Composable]] = []
        if col.type == "text" and col.allowed is not None:
            out.append((
                sql.SQL("lower({}) not in ({})").format(t, sql.SQL(", ").join(map(_lit, col.allowed))),
                _reason(NOT_ALLOWED, column=col.name, value=_repr(t), allowed=", ".join(col.allowed)),
            ))
        elif col.type == "numeric":
            # a plain decimal PostgreSQL refuses is too big or too precise for its numeric
            out.append((
                sql.SQL("not pg_input_is_valid({t}, 'numeric') and {t} ~ {shape}").format(
                    t=t, shape=_lit(PLAIN_DECIMAL)),
                _reason(OUT_OF_NUMERIC_RANGE, **shown),
            ))
            # NaN and the infinities parse but are no amounts; every spelling of them has an n
            out.append((
                sql.SQL("not (pg_input_is_valid({t}, 'numeric') and {plain})").format(
                    t=t, plain=_plain_number(t)),
                bad,
            ))
        elif col.type == "int":
            # "2.0" is an int too, as Decimal reads it
            out.append((
                sql.SQL(
                    "not (case when pg_input_is_valid({t}, 'integer') then {plain}"
                    " when pg_input_is_valid({t}, 'numeric') and {plain} then"
                    " {t}::numeric = trunc({t}::numeric) else false end)"
                ).format(t=t, plain=_plain_number(t)),
                bad,
            ))
            out.append((
                sql.SQL("{t}::numeric not between {lo} and {hi}").format(
                    t=t, lo=_lit(INT4_MIN), hi=_lit(INT4_MAX)),
                _reason(OUT_OF_INT_RANGE, **shown),
            ))
        elif col.type in ("date", "timestamp"):
            # ISO 8601 shapes only: PostgreSQL alone would also take 'yesterday' or 'Feb 20 2026',
            # hour 24 ('2026-03-01T24:00:00', the next midnight) and a lower-case 'z' for UTC,
            # which Python refuses; Python takes a lower-case 't' between date and time
            pg_type = "timestamp" if col.type == "date" else "timestamptz"
            out.append((
                sql.SQL(
                    "not (case when {t} like '____-__-__' or (({t} like '____-__-__T%'"
                    " or {t} like '____-__-__t%' or {t} like '____-__-__ %')"
                    " and substr({t}, 12, 2) <> '24' and {t} not like '%z')"
                    " then pg_input_is_valid({t}, {ty}) else false end)"
                ).format(t=t, ty=_lit(pg_type)),
                bad,
            ))
        elif col.type == "bool":
            words = sql.SQL(", ").join(map(_lit, TRUE_WORDS + FALSE_WORDS))
            out.append((sql.SQL("lower({}) not in ({})").format(t, words), bad))
        if col.non_negative:
            out.append((
                sql.SQL("{} like '-%' and {} < 0").format(t, self.typed(col)),
                _reason(NEGATIVE, column=col.name, value=sql.SQL("{}::text").format(self.typed(col))),
            ))
        if col.positive:
            out.append((
                sql.SQL("{} <= 0").format(self.typed(col)),
                _reason(NOT_POSITIVE, column=col.name, value=_repr(t)),
            ))
        return out

    def typed(self, col: Column) -> sql.Composable:
        """The value cast to its column type; only evaluated on a value that passed its check."""
        t = self.t(col.name)
        e = self.entity
        if col.type == "text":
            upper = (col.name == e.currency_column) or (e.path == "erp/fx_rates" and col.name == "currency")
            if upper:
                return sql.SQL("upper({})").format(t)
            return sql.SQL("lower({})").format(t) if col.allowed is not None else t
        if col.type == "numeric":
            return sql.SQL("{}::numeric").format(t)
        if col.type == "int":
            return sql.SQL("{}::numeric::integer").format(t)
        if col.type == "date":
            return sql.SQL("left({}, 10)::date").format(t)
        if col.type == "timestamp":
            return sql.SQL("{}::timestamptz").format(t)
        if col.type == "bool":
            return sql.SQL("(lower({}) in ({}))").format(t, sql.SQL(", ").join(map(_lit, TRUE_WORDS)))
        raise AssertionError(col.type)

    def reason(
        self, business_date: date, max_future_days: int
    ) -> tuple[sql.Composable, list[sql.Composable]]:
        """(case expression giving the reject reason or null, the joins it needs)."""
        e = self.entity
        whens: list[tuple[sql.Composable, sql.Composable]] = []
        # values too long for any path, in header order (the row path checks them first);
        # octet_length reads the value's header, length counts characters: the cheap test first
        for name in self.columns:
            whens.append((
                sql.SQL("octet_length(s.{c}) > {n} and length(s.{c}) > {n}").format(
                    c=self.raw(name), n=_lit(FIELD_LIMIT)),
                _reason(TOO_LONG, column=name, length=sql.SQL("length(s.{})").format(self.raw(name)),
                        limit=FIELD_LIMIT),
            ))
        for col in e.columns:
            if col.name not in self.pos:
                continue
            for cond, msg in self.type_problems(col):
                whens.append((sql.SQL("{} is not null and {}").format(self.t(col.name), cond), msg))
        required = [c for c in e.required_columns]
        if required:
            whens.append((
                sql.SQL(" or ").join(sql.SQL("{} is null").format(self.t(c)) for c in required),
                _reason(MISSING, columns=sql.SQL("concat_ws(', ', {})").format(
                    sql.SQL(", ").join(
                        sql.SQL("case when {} is null then {} end").format(self.t(c), _lit(c))
                        for c in required
                    )
                )),
            ))
        for earlier, later in e.ordered_dates:
            if earlier not in self.pos or later not in self.pos:
                continue
            lo, hi = self.t(earlier), self.t(later)
            whens.append((
                sql.SQL("{lo} is not null and {hi} is not null"
                        " and left({hi}, 10)::date < left({lo}, 10)::date").format(lo=lo, hi=hi),
                _reason(BEFORE, later=later, later_value=sql.SQL("left({}, 10)").format(hi),
                        earlier=earlier, earlier_value=sql.SQL("left({}, 10)").format(lo)),
            ))
        if e.event_date_column and e.event_date_column in self.pos:
            t = self.t(e.event_date_column)
            whens.append((
                sql.SQL("{t} is not null and left({t}, 10)::date > {d}::date + {n}").format(
                    t=t, d=_lit(business_date), n=_lit(max_future_days)),
                _reason(IN_FUTURE, column=e.event_date_column, value=sql.SQL("left({}, 10)").format(t),
                        days=max_future_days, date=business_date),
            ))
        joins: list[sql.Composable] = []
        iso = e.iso_currency_column
        if iso and iso in self.pos:
            received = sql.SQL("coalesce({}, 'None')").format(self.t(iso))
            whens.append((
                sql.SQL("{} !~ {}").format(received, _lit("^[" + string.ascii_letters + "]{3}$")),
                _reason(UNKNOWN_CURRENCY, value=_repr(sql.SQL("upper({})").format(received))),
            ))
        if e.currency_column:
            cur = sql.SQL("upper(coalesce({}, 'None'))").format(self.t(e.currency_column))
            on = self.t(e.currency_date_column)
            whens.append((
                sql.SQL("{cur} <> {base} and not coalesce(fx.first_rate <= left({on}, 10)::date, false)")
                .format(cur=cur, base=_lit(self.base), on=on),
                _reason(NO_FX_RATE, currency=cur, date=sql.SQL("left({}, 10)").format(on)),
            ))
            joins.append(sql.SQL(
                "left join (select currency, min(rate_date) as first_rate from {}.erp__fx_rates"
                " group by currency) fx on fx.currency = {}"
            ).format(sql.Identifier(RAW_SCHEMA), cur))
        for i, fk in enumerate(e.foreign_keys):
            if fk.column not in self.pos:
                continue
            t = self.t(fk.column)
            alias = sql.Identifier(f"fk{i}")
            ref = BY_PATH[fk.entity]
            whens.append((
                sql.SQL("{} is not null and {}.k is null").format(t, alias),
                _reason(UNKNOWN_KEY, column=fk.column, value=_repr(t), entity=fk.entity),
            ))
            joins.append(sql.SQL(
                "left join (select distinct {col} as k from {s}.{tbl}) {a} on {a}.k = {t}"
            ).format(col=sql.Identifier(fk.ref_column), s=sql.Identifier(RAW_SCHEMA),
                     tbl=sql.Identifier(ref.raw_table), a=alias, t=t))
        if not whens:
            return sql.SQL("null::text"), joins
        case = sql.SQL("case {} end").format(
            sql.SQL(" ").join(sql.SQL("when {} then {}").format(c, m) for c, m in whens))
        return case, joins

    def json_of(self, names: list[str], source: str) -> sql.Composable:
        """jsonb object of the given header columns as received ('' for empty)."""
        parts = []
        for start in range(0, len(names), 50):  # jsonb_build_object takes at most 100 arguments
            chunk = names[start:start + 50]
            parts.append(sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
                sql.SQL("{}, coalesce({}.{}, '')").format(_lit(n), sql.Identifier(source), self.raw(n))
                for n in chunk
            )))
        return sql.SQL(" || ").join(parts)


def load_csv_in_sql(conn: psycopg.Connection, load: FileLoad) -> PathResult:
    """Load one CSV / csv.gz file set-based; raise UseRowPath when the row path must do it.

    Runs inside the caller's transaction (the file's); uses a savepoint so that a hand-back
    leaves nothing behind.
    """
    path, entity, business_date, load_id = load.path, load.entity, load.business_date, load.load_id
    if conn.info.server_version < 160000:
        raise UseRowPath("the set-based checks need PostgreSQL 16+ (pg_input_is_valid)")
    if conn.execute("show server_encoding").fetchone()[0] != "UTF8":
        raise UseRowPath("the set-based path needs a UTF8 database")
    pg_enc = pg_encoding(load.encoding)
    if pg_enc is None:
        raise UseRowPath(f"encoding {load.encoding} has no PostgreSQL COPY equivalent here")
    header = read_csv_header(path, load.encoding)
    if header is None:
        raise UseRowPath("header needs the row path")
    columns, header_bytes = header
    known = set(entity.column_names)
    if any(c not in columns for c in entity.required_columns):
        raise UseRowPath("required column missing")
    extras = [c for c in columns if c not in known]
    timer = _Timer()
    stage = sql.Identifier(META_SCHEMA, f"_ingest_stage_{load_id}")
    bad = sql.Identifier(META_SCHEMA, f"_ingest_bad_{load_id}")

    def raw_col(name: str) -> sql.Composable:
        return sql.Identifier(f"c{columns.index(name)}")

    try:
        with conn.transaction():
            conn.execute(sql.SQL(
                "create unlogged table {} (_rec bigint generated always as identity (cache 10000), {})"
            ).format(stage, sql.SQL(", ").join(sql.SQL("{} text").format(raw_col(c)) for c in columns)))
            rows_in, lines, trim = _copy(conn, path, stage, [raw_col(c) for c in columns], pg_enc,
                                         len(header_bytes))
    except (psycopg.errors.DataError, OSError, EOFError, zlib.error) as exc:
        raise UseRowPath(f"COPY refused the file: {str(exc).splitlines()[0]}") from None
    if rows_in != lines:
        conn.execute(sql.SQL("drop table {}").format(stage))
        raise UseRowPath(f"{lines} data lines hold {rows_in} records (quoted newlines or blank lines)")

    timer.lap("copy")
    conn.execute("set local work_mem = '256MB'")
    q = _Sql(entity, columns, load.base_currency, trim)
    reason, joins = q.reason(business_date, load.max_future_days)
    # the file's rows with their stripped values t_i next to the raw ones c_i
    src = sql.SQL("{} s cross join lateral (select {}) t").format(stage, q.trims())
    all_raw = q.json_of(columns, "s")
    # 1. the rows that fail a check, with the first reason (the case stops at the first)
    conn.execute(sql.SQL(
        "create unlogged table {bad} as select _rec, reason, raw_record from"
        " (select s._rec, {reason} as reason, {all_raw} as raw_record from {src} {joins}) v"
        " where reason is not null"
    ).format(bad=bad, reason=reason, all_raw=all_raw, src=src, joins=sql.SQL(" ").join(joins)))
    timer.lap("checks")
    # 2. among the others, a key already seen on an earlier line is a duplicate
    _reject_duplicates(conn, q, src, stage, bad, all_raw)
    timer.lap("duplicates")

    rejected = insert_rejects_from(conn, load, bad)
    # 3. the rest, cast to their types, into the raw table
    typed = [q.typed(entity.column(c)) if c in q.pos else sql.SQL("null") for c in entity.column_names]
    raw_cols = [*entity.column_names, "_load_id", "_line_number", "_business_date", "_extra"]
    extra_json = q.json_of(extras, "s") if extras else sql.SQL("null::jsonb")
    loaded = conn.execute(sql.SQL(
        "insert into {}.{} ({}) select {}, %(load_id)s, s._rec + 1, %(day)s, {}"
        " from {} where not exists (select from {} b where b._rec = s._rec)"
    ).format(sql.Identifier(RAW_SCHEMA), sql.Identifier(entity.raw_table),
             sql.SQL(", ").join(map(sql.Identifier, raw_cols)),
             sql.SQL(", ").join(typed), extra_json, src, bad),
        {"load_id": load_id, "day": business_date}).rowcount
    timer.lap("insert")
    conn.execute(sql.SQL("drop table {}, {}").format(stage, bad))
    log.debug("%s: %s", load.relpath, timer)
    return PathResult(rows_in, loaded, rejected, extras)


def _reject_duplicates(
    conn: psycopg.Connection, q: _Sql, src: sql.Composable, stage: sql.Composable,
    bad: sql.Composable, all_raw: sql.Composable,
) -> None:
    """Among rows that passed every check, a key seen on an earlier line is a duplicate."""
    e = q.entity
    keys = sql.SQL(", ").join(q.typed(e.column(k)) if k in q.pos else sql.SQL("null") for k in e.key)
    # count only: collecting every key's line numbers would cost more than the check itself.
    # One process with a big hash table beats parallel workers that must sort their partial
    # groups (every key is a group of its own when the file has no duplicates).
    conn.execute("set local max_parallel_workers_per_gather = 0")
    (any_dup,) = conn.execute(sql.SQL(
        "select exists (select from {src} where not exists (select from {bad} b where b._rec = s._rec)"
        " group by {k} having count(*) > 1)"
    ).format(k=keys, src=src, bad=bad)).fetchone()
    conn.execute("reset max_parallel_workers_per_gather")
    if not any_dup:
        return
    dups = conn.execute(sql.SQL(
        "select array[{k}]::text[], array_agg(s._rec order by s._rec) from {src}"
        " where not exists (select from {bad} b where b._rec = s._rec)"
        " group by {k} having count(*) > 1"
    ).format(k=keys, src=src, bad=bad)).fetchall()
    found: list[tuple[int, str]] = []
    for values, recs in dups:
        message = duplicate_key_message(e, _parsed_key(e, values), recs[0] + 1)
        found.extend((rec, message) for rec in recs[1:])
    with conn.cursor() as cur:
        cur.execute("create temp table _ingest_dups (rec bigint, reason text) on commit drop")
        with cur.copy("copy _ingest_dups (rec, reason) from stdin") as copy:
            for row in found:
                copy.write_row(row)
        cur.execute(sql.SQL(
            "insert into {bad} (_rec, reason, raw_record)"
            " select d.rec, d.reason, {raw} from _ingest_dups d join {stage} s on s._rec = d.rec"
        ).format(bad=bad, raw=all_raw, stage=stage))
        cur.execute("drop table _ingest_dups")


def _parsed_key(e: Entity, values: list[str | None]) -> tuple:
    """The key as the row contract parses it, from its values cast to text here."""
    parsed: list[object] = []
    for name, v in zip(e.key, values, strict=True):
        col = e.column(name)
        if v is None:
            parsed.append(None)
        elif col.type == "int":
            parsed.append(int(v))
        elif col.type == "date":
            parsed.append(date.fromisoformat(v))
        else:
            parsed.append(v)
    return tuple(parsed)


def _copy(
    conn: psycopg.Connection, path: Path, stage: sql.Composable, cols: list[sql.Composable],
    pg_enc: str, skip: int,
) -> tuple[int, int, bool]:
    """Stream the file after its header into the staging table.

    Returns (records, data lines, whether values may need stripping).
    """
    utf8 = pg_enc == "UTF8"
    lines = 0
    last = b"\n"
    trim = not utf8
    tail = b"\n"  # bytes before the chunk, so a pattern split across two chunks is seen
    stmt = sql.SQL("copy {} ({}) from stdin (format csv, encoding {})").format(
        stage, sql.SQL(", ").join(cols), _lit(pg_enc))
    with open_bytes(path) as fh, conn.cursor() as cur:
        fh.read(skip)
        with cur.copy(stmt) as copy:
            while chunk := fh.read(CHUNK):
                lines += chunk.count(b"\n")
                if not trim:
                    seen = tail + chunk
                    trim = any(p in seen for p in _EDGE_SPACE) or (
                        b"\xe2\x80" in seen and _E2_SPACE.search(seen) is not None)
                    tail = chunk[-2:]
                last = chunk[-1:]
                copy.write(chunk)
        rows = cur.rowcount
    if last != b"\n":
        lines += 1
        trim = trim or last == b" "
    return rows, lines, trim

