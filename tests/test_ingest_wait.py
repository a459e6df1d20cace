"""``ingest.missing_required_entity: wait``: the ingest waits for tonight's expected extract.

Why: extracts often land late. With ``wait`` the nightly run polls the landing folder for the
as-of date folder of every ``expected_daily`` entity and loads once it is there, or fails
after ``wait_timeout_minutes`` with a message naming the entity, the date and how long it
waited, instead of silently building tiers from yesterday's orders. Real folders, a real
thread delivering the file, real PostgreSQL; timeouts of seconds keep the tests fast.
"""

from __future__ import annotations

import threading
import time
from datetime import date
from pathlib import Path

import psycopg
import pytest
from tierflow.config import TierflowConfig
from tierflow.ingest import IngestError, run_ingest

DAY = "2026-03-01"
AS_OF = date(2026, 3, 1)
TS = "2026-03-01T08:00:00"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_base(landing: Path) -> None:
    """Customers, products and orders for AS_OF; no order lines (those arrive late)."""
    write(landing / f"crm/customers/{DAY}/c.csv",
          f"customer_id,customer_name,created_at,updated_at\nK1,Alice,2025-01-15,{TS}\n")
    write(landing / f"erp/products/{DAY}/p.csv", f"product_id,standard_cost,updated_at\nP1,6,{TS}\n")
    write(landing / f"erp/orders/{DAY}/o.csv",
          "order_id,customer_id,order_date,status,currency,updated_at\n"
          f"O1,K1,2026-02-20,completed,CNY,{TS}\n")


LINES = (f"order_id,line_number,product_id,quantity,unit_price,updated_at\n"
         f"O1,1,P1,2,10,{TS}\nO1,2,P1,1,5,{TS}\n")


def waiting(config: TierflowConfig, timeout_minutes: float, poll_seconds: float) -> TierflowConfig:
    ingest = config.ingest.model_copy(update={
        "missing_required_entity": "wait", "wait_timeout_minutes": timeout_minutes,
        "wait_poll_seconds": poll_seconds})
    return config.model_copy(update={"ingest": ingest})


def test_wait_loads_the_extract_that_lands_during_the_wait(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing)
    folder = landing / f"erp/order_lines/{DAY}"

    def deliver() -> None:
        time.sleep(1.0)
        # written under a hidden name, then renamed: a half-written file is never seen
        write(folder / ".lines.csv.tmp", LINES)
        (folder / ".lines.csv.tmp").rename(folder / "lines.csv")

    writer = threading.Thread(target=deliver)
    started = time.monotonic()
    writer.start()
    try:
        # 30 s timeout (0.5 minutes), looking every 0.2 s
        report = run_ingest(warehouse_url, landing, AS_OF, waiting(config, 0.5, 0.2))
    finally:
        writer.join()
    waited = time.monotonic() - started

    assert 1.0 <= waited < 10
    assert report.totals()["files_loaded"] == 4
    with psycopg.connect(warehouse_url) as conn:
        # the two lines of the late file: 2 x 10 + 1 x 5 = 25
        assert conn.execute("select count(*), sum(quantity * unit_price) from raw.erp__order_lines"
                            ).fetchone() == (2, 25)
    (note,) = [w for w in report.warnings if w.startswith("waited")]
    assert "erp/order_lines" in note and "2026-03-01" in note


def test_wait_fails_after_the_timeout_naming_entity_date_and_wait(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing)
    # an earlier day's lines exist (so the entity was delivered once), but not tonight's,
    # and an empty date folder or a hidden file does not count as delivered
    write(landing / "erp/order_lines/2026-02-28/lines.csv", LINES)
    (landing / f"erp/order_lines/{DAY}").mkdir(parents=True)
    write(landing / f"erp/order_lines/{DAY}/.partial.csv.tmp", LINES)

    started = time.monotonic()
    with pytest.raises(IngestError) as excinfo:
        # 0.02 minutes = 1.2 s, looking every 0.25 s
        run_ingest(warehouse_url, landing, AS_OF, waiting(config, 0.02, 0.25))
    waited = time.monotonic() - started

    assert 1.2 <= waited < 5
    message = str(excinfo.value)
    assert "no erp/order_lines file in the 2026-03-01 date folder after waiting 1." in message
    assert "wait_timeout_minutes: 0.02" in message
    # nothing was loaded: the run stops before touching the warehouse
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("select to_regclass('tierflow_meta.load_audit')").fetchone() == (None,)


def test_wait_does_not_wait_when_everything_is_there(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing)
    write(landing / f"erp/order_lines/{DAY}/lines.csv", LINES)

    started = time.monotonic()
    report = run_ingest(warehouse_url, landing, AS_OF, waiting(config, 0.5, 5))

    assert time.monotonic() - started < 5  # one poll would take 5 s
    assert report.totals()["files_loaded"] == 4
    assert not [w for w in report.warnings if w.startswith("waited")]
