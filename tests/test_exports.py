"""The per-date exports, on a small hand-made `bi` schema: the CRM import file's exact bytes.

No dbt here: the published tables are created by hand with only the columns the exports
read, so every expected row can be read off the inserts below.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import psycopg

AS_OF = date(2026, 3, 31)
BOM = b"\xef\xbb\xbf"


def make_bi(url: str) -> None:
    """Three customers tiered on AS_OF (one more row on the night before), in schema bi."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema bi")
        conn.execute(
            "create table bi.customer_tiers (customer_id text, as_of_date date, value_tier text,"
            " rfm_segment text, value_tier_rank int, monetary numeric, tier_change text,"
            " is_hysteresis_held boolean, is_override boolean, is_high_potential boolean)"
        )
        conn.execute(
            "insert into bi.customer_tiers values"
            " ('C02', '2026-03-31', 'low', 'Hibernating', 3, 10.5, 'same', true, false, false),"
            " ('C01', '2026-03-31', 'high', 'Champions', 1, 900, 'up', false, true, false),"
            " ('C,3', '2026-03-31', 'medium', 'Can''t Lose Them', 2, 300, 'new', false, false, true),"
            # another night: not exported
            " ('C01', '2026-03-30', 'low', 'Lost', 3, 0, 'down', false, false, false)"
        )
        conn.execute(
            "create table bi.account_alerts (as_of_date date, alert_id text, customer_id text,"
            " customer_name text, value_tier text, alert_type text, severity text, owner text, reason text)"
        )
        conn.execute(
            "insert into bi.account_alerts values"
            " ('2026-03-31', 'a1', 'C01', 'Contoso', 'high', 'credit', 'critical', 'Wang Fang', 'overdue'),"
            " ('2026-03-31', 'a2', 'C01', 'Contoso', 'high', 'churn_risk', 'critical', 'Wang Fang', 'quiet'),"
            " ('2026-03-31', 'a3', 'C,3', 'C3 Ltd', 'medium', 'credit', 'warning', 'unassigned', 'overdue'),"
            " ('2026-03-30', 'a4', 'C01', 'Contoso', 'low', 'credit', 'warning', 'Wang Fang', 'old')"
        )
        conn.execute(
            "create table bi.allocation_plan_tier (value_tier text, as_of_date date, plan_period text,"
            " tier_rank int, service_level text, customers int, allocated_budget numeric,"
            " budget_per_customer numeric, plan_mode text, expected_return numeric)"
        )
        conn.execute(
            "insert into bi.allocation_plan_tier values"
            " ('high', '2026-03-31', '2026-04', 1, '专属客户经理', 1, 600, 600, 'policy', 900),"
            " ('medium', '2026-03-31', '2026-04', 2, 'pooled sales team', 1, 300, 300, 'policy', 250.5),"
            " ('low', '2026-03-31', '2026-04', 3, 'self-service', 1, 100, 100, 'policy', 0),"
            " ('high', '2026-03-30', '2026-04', 1, 'yesterday''s level', 1, 600, 600, 'policy', 1)"
        )
        conn.execute(
            "create table bi.allocation_plan_customer (customer_id text, as_of_date date,"
            " value_tier text, service_level text, primary_action text, plan_period text, plan_mode text,"
            " allocated_budget numeric, expected_return numeric, action_reason text)"
        )
        conn.execute(
            "insert into bi.allocation_plan_customer values"
            " ('C01', '2026-03-31', 'high', '专属客户经理', 'quarterly business review', '2026-04',"
            " 'policy', 600, 900, 'top customer'),"
            " ('C02', '2026-03-31', 'low', 'self-service', 'win-back \"comeback\" offer', '2026-04',"
            " 'policy', 100, 0, 'no order for 200 days'),"
            " ('C01', '2026-03-30', 'low', 'self-service', 'yesterday''s action', '2026-04', 'policy', 1, 1,"
            " 'old')"
            # C,3 has no per-customer plan row: its service level and action stay empty
        )


def test_crm_import_from_the_per_customer_plan(warehouse_url: str, tmp_path: Path) -> None:
    from tierflow.report.exports import write_exports

    make_bi(warehouse_url)
    written = write_exports(warehouse_url, "bi", AS_OF, tmp_path)
    crm = tmp_path / "2026-03-31" / "crm_import.csv"
    assert str(crm) in written
    raw = crm.read_bytes()
    assert raw.startswith(BOM)
    # sorted by customer_id byte-wise ('C,3' < 'C01' < 'C02': ',' is 0x2c, '0' is 0x30);
    # RFC 4180 quoting for the comma and the doubled inner quotes; CRLF line ends
    assert raw[len(BOM):].decode("utf-8") == (
        "customer_id,value_tier,rfm_segment,service_level,primary_action\r\n"
        '"C,3",medium,Can\'t Lose Them,,\r\n'
        "C01,high,Champions,专属客户经理,quarterly business review\r\n"
        'C02,low,Hibernating,self-service,"win-back ""comeback"" offer"\r\n'
    )
    assert not list(crm.parent.glob(".*partial"))


# Cells a spreadsheet would evaluate: each text starts with a formula trigger (OWASP: =, +, -,
# @, tab, carriage return). The CSV files must show them as text, with a leading '; numbers
# (a negative monetary) stay numbers; the tables and the Parquet files keep them verbatim.
HYPERLINK = '=HYPERLINK("http://evil.example","click")'
CMD = "=cmd|' /C calc'!A0"


def add_hostile_customers(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into bi.customer_tiers values"
            " (%s, '2026-03-31', 'high', '@Champions', 1, -10.5, 'new', false, false, false),"
            " ('+33', '2026-03-31', 'low', 'Hibernating', 3, 5, 'new', false, false, false),"
            " ('-7', '2026-03-31', 'low', 'Lost', 3, 0, 'new', false, false, false),"
            " (e'\\tTAB', '2026-03-31', 'medium', 'Lost', 2, 1, 'new', false, false, false),"
            " (e'\\rCR', '2026-03-31', 'medium', 'Lost', 2, 1, 'new', false, false, false)",
            (HYPERLINK,),
        )
        conn.execute(
            "insert into bi.allocation_plan_customer values"
            " (%s, '2026-03-31', 'high', 'self-service', %s, '2026-04', 'policy', 1, 1, '-not a formula')",
            (HYPERLINK, CMD),
        )


def test_formula_triggers_are_neutralised_in_the_csv_files_only(warehouse_url: str, tmp_path: Path) -> None:
    import pandas as pd
    from tierflow.report.exports import write_exports

    make_bi(warehouse_url)
    add_hostile_customers(warehouse_url)
    write_exports(warehouse_url, "bi", AS_OF, tmp_path)
    out = tmp_path / "2026-03-31"

    # the CRM file, byte by byte: rows in byte order of the key (tab 0x09 < CR 0x0d < '+' < '-'
    # < '=' < 'C'); RFC 4180 quotes the cells holding a CR, a comma or a quote
    assert (out / "crm_import.csv").read_bytes()[len(BOM):].decode("utf-8") == (
        "customer_id,value_tier,rfm_segment,service_level,primary_action\r\n"
        "'\tTAB,medium,Lost,,\r\n"
        "\"'\rCR\",medium,Lost,,\r\n"
        "'+33,low,Hibernating,,\r\n"
        "'-7,low,Lost,,\r\n"
        "\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\",high,'@Champions,self-service,"
        "'=cmd|' /C calc'!A0\r\n"
        '"C,3",medium,Can\'t Lose Them,,\r\n'
        "C01,high,Champions,专属客户经理,quarterly business review\r\n"
        'C02,low,Hibernating,self-service,"win-back ""comeback"" offer"\r\n'
    )
    # the CSV export: text cells neutralised, the negative number left a number
    with open(out / "customer_tiers.csv", newline="", encoding="utf-8") as fh:
        tiers = {r["customer_id"]: r for r in csv.DictReader(fh)}
    assert set(tiers) >= {"'" + HYPERLINK, "'+33", "'-7", "'\tTAB", "'\rCR", "C01", "C,3"}
    assert tiers["'" + HYPERLINK]["rfm_segment"] == "'@Champions"
    assert tiers["'" + HYPERLINK]["monetary"] == "-10.5"
    with open(out / "allocation_plan_customer.csv", newline="", encoding="utf-8") as fh:
        plan = {r["customer_id"]: r for r in csv.DictReader(fh)}
    assert plan["'" + HYPERLINK]["primary_action"] == "'" + CMD
    assert plan["'" + HYPERLINK]["action_reason"] == "'-not a formula"
    assert plan["C01"]["primary_action"] == "quarterly business review"
    # the Parquet export and the published table keep the values as they are
    parquet = pd.read_parquet(out / "customer_tiers.parquet")
    assert {HYPERLINK, "+33", "-7", "\tTAB", "\rCR"} <= set(parquet["customer_id"])
    assert parquet.loc[parquet["customer_id"] == HYPERLINK, "monetary"].tolist() == [-10.5]
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select primary_action from bi.allocation_plan_customer where customer_id = %s",
                            (HYPERLINK,)).fetchone() == (CMD,)


def test_exports_are_written_in_chunks_with_the_database_types(
    warehouse_url: str, tmp_path: Path, monkeypatch
) -> None:
    """Chunks of two rows give the same files as one chunk; each column keeps its database
    type in every chunk: an integer column with a null is written 3 and empty (not 3.0), a
    numeric column that is null in a whole chunk is still a number in the Parquet file."""
    import pandas as pd
    import pyarrow.parquet as pq
    from tierflow.report import exports

    make_bi(warehouse_url)
    add_hostile_customers(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("update bi.customer_tiers set value_tier_rank = null, monetary = null"
                     " where customer_id in ('C01', 'C02')")
    exports.write_exports(warehouse_url, "bi", AS_OF, tmp_path / "one")
    monkeypatch.setattr(exports, "EXPORT_CHUNK_ROWS", 2)
    exports.write_exports(warehouse_url, "bi", AS_OF, tmp_path / "two")
    one, two = tmp_path / "one" / "2026-03-31", tmp_path / "two" / "2026-03-31"
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir())
    for name in names:
        if name.endswith(".csv"):
            assert (one / name).read_bytes() == (two / name).read_bytes(), name
        else:
            assert pq.read_schema(one / name) == pq.read_schema(two / name), name
            pd.testing.assert_frame_equal(pd.read_parquet(one / name), pd.read_parquet(two / name))

    # 8 customers on AS_OF, ordered by customer_id: the two rows of C01 and C02 (nulls) are
    # one chunk of their own when chunks hold two rows
    with open(two / "customer_tiers.csv", newline="", encoding="utf-8") as fh:
        tiers = {r["customer_id"]: r for r in csv.DictReader(fh)}
    assert len(tiers) == 8
    assert (tiers["C01"]["value_tier_rank"], tiers["C01"]["monetary"]) == ("", "")
    assert (tiers["C,3"]["value_tier_rank"], tiers["C,3"]["monetary"]) == ("2", "300.0")
    schema = pq.read_schema(two / "customer_tiers.parquet")
    assert (str(schema.field("value_tier_rank").type), str(schema.field("monetary").type),
            str(schema.field("as_of_date").type), str(schema.field("is_override").type)) == (
        "int64", "double", "date32[day]", "bool")


def test_an_export_column_of_an_unknown_type_is_named(warehouse_url: str, tmp_path: Path) -> None:
    import pytest
    from tierflow.report.exports import write_exports

    make_bi(warehouse_url)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("alter table bi.customer_tiers add column tags jsonb")
    with pytest.raises(ValueError, match=r"export of bi.customer_tiers: .* tags \(type oid 3802\)"):
        write_exports(warehouse_url, "bi", AS_OF, tmp_path)


# the text of a value in the CSV files is what pandas' to_csv writes for the value as psycopg reads
# it (each column as this dtype): the reference the exports' own writer is checked against below
PANDAS_DTYPES = {"int64": "Int64", "float64": "float64", "bool_": "object", "string": "object",
                 "date32": "object"}


def _pandas_export(url: str, query: str, name: str, tmp_path: Path) -> tuple[bytes, object]:
    """The CSV bytes and the Arrow table of the query's rows (for AS_OF), written by pandas."""
    import pandas as pd
    import pyarrow as pa
    from tierflow.report.exports import EXPORT_TYPES, neutralise_formula

    with psycopg.connect(url) as conn:
        cur = conn.execute(query, (AS_OF,))
        rows, description = cur.fetchall(), cur.description
    names = [d.name for d in description]
    kinds = {d.name: EXPORT_TYPES[d.type_code] for d in description}
    frame = pd.DataFrame(rows, columns=names).astype({n: PANDAS_DTYPES[k] for n, k in kinds.items()})
    text = frame.assign(**{n: frame[n].map(neutralise_formula) for n, k in kinds.items() if k == "string"})
    path = tmp_path / f"{name}.pandas.csv"
    text.to_csv(path, index=False, lineterminator="\r\n")
    schema = pa.schema([(n, getattr(pa, k)()) for n, k in kinds.items()])
    return path.read_bytes(), pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def test_the_csv_text_of_every_type_is_what_pandas_writes(warehouse_url: str, tmp_path: Path) -> None:
    """The exports read the server's CSV text into Arrow columns and write the CSV cells with
    Arrow's compute functions; every cell must be what pandas' to_csv wrote before (and what a
    reader of the files expects): floats as Python's repr (175.0, 1e-05, 1e+16), booleans True and
    False, nulls empty, text quoted where the csv module quotes it and formula triggers neutralised.
    30,000 rows of random values of every exported type, across three chunks."""
    import random
    from datetime import date as day
    from datetime import timedelta

    import pyarrow.parquet as pq
    from tierflow.report import exports

    rnd = random.Random(11)
    alphabet = ['a', 'Z', '7', ' ', ',', '"', "'", '\r', '\n', '\t', '=', '+', '-', '@', 'é', '中', ';']

    def text() -> str | None:
        if rnd.random() < 0.05:
            return None
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 6)))

    def double() -> float | None:
        roll = rnd.random()
        if roll < 0.05:
            return None
        if roll < 0.15:
            return rnd.choice([0.0, -0.0, 1e-4, 1e15, 1e16, 9999999999999998.0, 5e-324, 0.1 + 0.2, 1 / 3])
        return rnd.choice([-1, 1]) * 10 ** rnd.uniform(-9, 22)

    def single() -> float | None:  # real: within float4's range
        return None if rnd.random() < 0.05 else rnd.choice([-1, 1]) * 10 ** rnd.uniform(-9, 30)

    def money() -> str | None:  # numeric, as the marts hold amounts and scores
        return None if rnd.random() < 0.05 else f"{rnd.randrange(-10**9, 10**9)}e-{rnd.randrange(0, 9)}"

    rows = [
        (f"K{i:05d}", AS_OF, text(), None if i % 17 == 0 else rnd.randrange(-2**31, 2**31),
         rnd.randrange(-2**62, 2**62), money(), double(), single(),
         None if i % 13 == 0 else rnd.random() < 0.5,
         None if i % 11 == 0 else day(1900, 1, 1) + timedelta(days=rnd.randrange(0, 80_000)))
        for i in range(30_000)
    ]
    rows[0] = ("K00000", AS_OF, "", 0, 0, "0", 0.0, None, True, day(5, 1, 1))
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("create schema bi")
        conn.execute("create table bi.wide (key text, as_of_date date, label varchar(20), n int, big bigint,"
                     " amount numeric, score float8, share real, flag boolean, since date)")
        with conn.cursor().copy("copy bi.wide from stdin") as copy:
            for row in rows:
                copy.write_row(row)
        # rows of one field: the csv module quotes an empty one (else the line would be blank)
        conn.execute("create table bi.narrow (as_of_date date, note text)")
        conn.execute("insert into bi.narrow values (%s, ''), (%s, null), (%s, 'x,y')", (AS_OF,) * 3)

    queries = {"wide": "select * from bi.wide where as_of_date = %s order by 1, 2",
               "narrow": "select note from bi.narrow where as_of_date = %s order by 1"}
    for table, query in queries.items():
        expected_csv, expected_table = _pandas_export(warehouse_url, query, table, tmp_path)
        csv_path, pq_path = tmp_path / f"{table}.csv", tmp_path / f"{table}.parquet"
        with psycopg.connect(warehouse_url) as conn:
            exports._export_table(conn, psycopg.sql.SQL(query), AS_OF, f"bi.{table}", csv_path, pq_path)
        written = csv_path.read_bytes()
        if written != expected_csv:  # the first line that differs, not 3 MB of bytes
            pairs = zip(written.split(b"\r\n"), expected_csv.split(b"\r\n"), strict=False)
            line, (got, want) = next((n, p) for n, p in enumerate(pairs) if p[0] != p[1])
            raise AssertionError(f"{table}.csv line {line + 1}: {got!r} where pandas writes {want!r}")
        assert pq.read_table(pq_path).equals(expected_table), table
    assert written.decode("utf-8") == 'note\r\n""\r\n"x,y"\r\n""\r\n'  # '', 'x,y', null
