"""The HTML run report: known answers from hand-made published tables, and a real browser.

The bi tables are created by hand with the published column names (dbt_project/models/marts
ymls; tier_migrations as its contract says: as_of_date, from_tier (null = new), to_tier,
customers, revenue_in_window) and a few rows whose figures are worked out in the comments. The
report is then opened in headless Chromium, which must draw every chart.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import psycopg
import pytest
from tierflow.ingest.schema import ensure_schema
from tierflow.report import render_report

AS_OF = date(2026, 11, 20)
PREV = date(2026, 11, 19)
RUN = "run-2026-11-20"
EVIL_NAME = "<script>alert('x')</script> & Söhne"
EVIL_REASON = "missing required value: created_at <img src=x onerror=alert(1)>"
LINKS = {"Data Docs": "data-docs/index.html", "dbt docs": "dbt-docs/index.html"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = (
    "headless Chromium is needed to check that the report's charts render: "
    "install Debian's package with `apt-get install -y chromium` (CI's .ci/run does)"
)

# Tiers (value_tier_rank 1 = high).
#   2026-11-19: c1 high, c2 high, c3 medium, c4 low            -> high 2, medium 1, low 1
#   2026-11-20: c1 high, c2 medium, c3 medium, c4 low, c5 low  -> high 1, medium 2, low 2
#   monetary on 11-20: c1 6000, c2 2000, c3 1000, c4 600, c5 400 = 10000
#   shares: customers high 1/5 = 20.0%, medium 2/5 = 40.0%, low 40.0%;
#           revenue high 6000/10000 = 60.0%, medium 3000 = 30.0%, low 1000 = 10.0%
#   vs 11-19: high 1 - 2 = -1, medium 2 - 1 = +1, low 2 - 1 = +1
# Tonight's changes (11-20 rows only): up 0; down 1 (c2); same 3 (c1, c3, c4); new 1 (c5);
#   held by hysteresis 1 (c3); override 1 (c4); high potential 2 (c3, c5). The 11-19 rows
#   (4 new, c3 high potential) must not count: new would be 5, high potential 3.
TIERS = [
    # customer, as_of, tier, rank, monetary, tier_change, hysteresis held, override, high potential
    ("c1", PREV, "high", 1, 5000, "new", False, False, False),
    ("c2", PREV, "high", 1, 2500, "new", False, False, False),
    ("c3", PREV, "medium", 2, 900, "new", False, False, True),
    ("c4", PREV, "low", 3, 500, "new", False, False, False),
    ("c1", AS_OF, "high", 1, 6000, "same", False, False, False),
    ("c2", AS_OF, "medium", 2, 2000, "down", False, False, False),
    ("c3", AS_OF, "medium", 2, 1000, "same", True, False, True),
    ("c4", AS_OF, "low", 3, 600, "same", False, True, False),
    ("c5", AS_OF, "low", 3, 400, "new", False, False, True),
]
# Whale curve on 11-20: net contribution c1 5000, c2 2000, c3 1000, c4 -500, c5 -1500, total 6000
#   cumulative 5000, 7000, 8000, 7500, 6000 -> shares .833333, 1.166667, 1.333333, 1.25, 1
#   peak 133.3% after 3 of 5 customers (60.0%); best 10% = ceil(0.5) = 1 customer: 83.3%,
#   best 20% = 1 customer: 83.3%, best 50% = ceil(2.5) = 3 customers: 133.3%;
#   loss-making c4, c5: 2 (40.0%)
PROFIT = [
    ("c1", 1, 5000, 0.833333),
    ("c2", 2, 2000, 1.166667),
    ("c3", 3, 1000, 1.333333),
    ("c4", 4, -500, 1.25),
    ("c5", 5, -1500, 1.0),
]
# Migrations 11-19 -> 11-20: c1 high->high (6000), c2 high->medium (2000), c3 medium->medium
#   (1000), c4 low->low (600), c5 new (null) -> low (400)
#   new 1 (400), moved up 0, stayed 3 (6000 + 1000 + 600 = 7600), moved down 1 (2000); all 5, 10000
MIGRATIONS = [
    (None, "low", 1, 400),
    ("high", "high", 1, 6000),
    ("high", "medium", 1, 2000),
    ("medium", "medium", 1, 1000),
    ("low", "low", 1, 600),
]
# Allocation: budget 1,000,000 split .6 / .3 / .1; per customer 600000/1, 300000/2, 100000/2;
#   all: 1,000,000 / 5 = 200,000. Expected return (the sums of PLAN below): high 90000,
#   medium 30000 + 30000 = 60000, low 2000 + 15000 = 17000, all 167000;
#   ROI 90000/600000 = 15.0%, 60000/300000 = 20.0%, 17000/100000 = 17.0%, all 16.7%
ALLOCATION = [
    ("high", 1, "dedicated account manager", 1, 600000, 90000),
    ("medium", 2, "pooled sales team", 2, 300000, 60000),
    ("low", 3, "self-service", 2, 100000, 17000),
]
CREDIT_REASON = "High credit risk: overdue share 60.0% > 50% <review terms> & invoices"
# Customer plan on 11-20 (policy mode, period 2026-11), budget and expected return:
#   retain            c1 600000 / 90000                            -> 1, 600000, 90000, ROI 15.0%
#   win back          c2 200000 / 30000                            -> 1, 200000, 30000, 15.0%
#   convert potential c3 100000 / 30000, c5 60000 / 15000          -> 2, 160000, 45000,
#                     45000 / 160000 = 0.28125 -> 28.1%
#   credit review     c4  40000 /  2000                            -> 1,  40000,  2000,  5.0%
#   all 5, 1,000,000, 167,000, 16.7%; by budget: c1, c2, c3, c5, c4.
#   The 11-19 row (optimized mode) is another night's plan and must not show.
PLAN = [
    # customer, as_of, tier, action, reason, budget, expected return, mode
    ("c1", AS_OF, "high", "retain", "Best tier: keep the relationship.", 600000, 90000, "policy"),
    ("c2", AS_OF, "medium", "win back", "Declining medium-tier customer.", 200000, 30000, "policy"),
    (
        "c3",
        AS_OF,
        "medium",
        "convert potential",
        "High potential in the medium tier.",
        100000,
        30000,
        "policy",
    ),
    ("c4", AS_OF, "low", "credit review", CREDIT_REASON, 40000, 2000, "policy"),
    ("c5", AS_OF, "low", "convert potential", "High potential in the low tier.", 60000, 15000, "policy"),
    ("c1", PREV, "high", "retain", "yesterday", 999, 1, "optimized"),
]
# Account alerts on 11-20 (the 11-19 one for Zed must not count):
#   by type: churn_risk critical 1 (c1) + warning 1 (c3) = 2; revenue_drop warning 1 (c2);
#            credit critical 1 (c1); tier_downgrade critical 1 (c2); all: critical 3, warning 2, 5
#   by owner (most critical first): Amy 2 alerts, 2 critical, 0 warning, 1 customer (c1);
#            Bob 2, 1, 1, 1 (c2); unassigned 1, 0, 1, 1 (c3); all 5, 3, 2, 3 customers
#   critical, by owner, customer, type: Amy c1 churn risk, Amy c1 credit, Bob c2 tier downgrade
ALERTS = [
    # as_of, customer, name, tier, type, severity, owner, reason
    (AS_OF, "c1", EVIL_NAME, "high", "churn_risk", "critical", "Amy", "no order for 70 days"),
    (AS_OF, "c1", EVIL_NAME, "high", "credit", "critical", "Amy", "credit risk high <60%>"),
    (AS_OF, "c2", "Beta GmbH", "medium", "tier_downgrade", "critical", "Bob", "fell from high"),
    (AS_OF, "c2", "Beta GmbH", "medium", "revenue_drop", "warning", "Bob", "revenue -60%"),
    (AS_OF, "c3", None, "medium", "churn_risk", "warning", "unassigned", "no order for 50 days"),
    (PREV, "c4", "Delta", "low", "credit", "critical", "Zed", "yesterday"),
]
# Sales KPIs, two segments. R = covered x active rate x revenue per active.
#   East/online  Sep C 10 A 4 R 4000 (.4, 1000); Oct C 12 A 6 R 7200 (.5, 1200):
#       change 3200 = (12-10)*.4*1000 800 + 12*(.5-.4)*1000 1200 + 12*.5*(1200-1000) 1200
#     Nov (to date) C 12 A 3 R 3000 (.25, 1000): change -4200 = 0 + 12*(.25-.5)*1200 -3600 + -600
#   West/offline Sep C 5 A 5 R 2500 (1, 500); Oct C 5 A 4 R 2400 (.8, 600):
#       change -100 = 0 + 5*(.8-1)*500 -500 + 5*.8*(600-500) 400
#     Nov C 5 A 2 R 1000: change -1400 = 0 + 5*(.4-.8)*600 -1200 + 5*.4*(500-600) -200
#   Oct totals (the last complete month): previous 6500, revenue 9600, change +3100 =
#       covered +800, active rate 1200 - 500 = +700, revenue per active 1200 + 400 = +1600;
#       covered 17, active 10, active rate 10/17 = 58.8%, revenue per active 9600/10 = 960.00
SALES = [
    # month, region, channel, complete, covered, active, revenue, previous, change, effects x3, new, churned
    ("2026-09-01", "East", "online", True, 10, 4, 4000, None, None, None, None, None, 4, 0),
    ("2026-10-01", "East", "online", True, 12, 6, 7200, 4000, 3200, 800, 1200, 1200, 2, 0),
    ("2026-11-01", "East", "online", False, 12, 3, 3000, 7200, -4200, 0, -3600, -600, 0, 1),
    ("2026-09-01", "West", "offline", True, 5, 5, 2500, None, None, None, None, None, 5, 0),
    ("2026-10-01", "West", "offline", True, 5, 4, 2400, 2500, -100, 0, -500, 400, 0, 0),
    ("2026-11-01", "West", "offline", False, 5, 2, 1000, 2400, -1400, 0, -1200, -200, 0, 1),
]
# Quality for this run: raw.erp_orders 3 passed; marts.customer_tiers 2 passed + 1 failed
#   warning -> 6 checks, 5 passed, 1 failed warning, 0 failed critical. The other run's
#   failed critical check is not this run's.
QUALITY = [
    (RUN, "raw.erp_orders", "expect_column_values_to_not_be_null", "order_id", "critical", True, "0"),
    (RUN, "raw.erp_orders", "expect_column_values_to_be_unique", "order_id", "critical", True, "0"),
    (RUN, "raw.erp_orders", "expect_table_row_count_to_be_between", None, "warning", True, "10"),
    (RUN, "marts.customer_tiers", "expect_compound_columns_to_be_unique", None, "critical", True, "0"),
    (RUN, "marts.customer_tiers", "expect_column_values_to_be_in_set", "value_tier", "critical", True, "0"),
    (
        RUN,
        "marts.customer_tiers",
        "expect_column_mean_to_be_between",
        "value_score",
        "warning",
        False,
        "<i>0.91</i>",
    ),
    ("run-old", "marts.customer_tiers", "expect_old_thing", None, "critical", False, "1"),
]
# Loads of this run: orders.csv 10 rows = 7 loaded + 3 rejected (2 bad int, 1 unknown currency),
#   customers.csv 5 = 4 + 1 (missing value); another run's file with 2 rejects does not count.
#   -> 2 files, 15 rows in, 11 loaded, 4 rejected; by reason 2, 1, 1.
LOADS = [
    (
        RUN,
        "erp/orders/2026-11-20/orders.csv",
        "erp",
        "orders",
        10,
        7,
        3,
        ["bad int in quantity: 'x'", "bad int in quantity: 'x'", "unknown currency 'XYZ'"],
    ),
    (RUN, "crm/customers/2026-11-20/customers.csv", "crm", "customers", 5, 4, 1, [EVIL_REASON]),
    ("run-old", "erp/orders/2026-11-19/orders.csv", "erp", "orders", 4, 2, 2, ["old", "old"]),
]


def build_published_tables(url: str) -> None:
    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        conn.execute(
            """
            create schema bi;
            create table bi.dim_customers (customer_id text, customer_name text);
            create table bi.customer_tiers (customer_id text, as_of_date date, value_tier text,
                value_tier_rank integer, monetary numeric, tier_change text, is_hysteresis_held boolean,
                is_override boolean, is_high_potential boolean);
            create table bi.customer_profitability (customer_id text, as_of_date date,
                contribution_rank bigint, net_contribution numeric, cumulative_contribution_share numeric,
                is_loss_making boolean);
            create table bi.tier_migrations (as_of_date date, from_tier text, to_tier text,
                customers bigint, revenue_in_window numeric);
            create table bi.allocation_plan_tier (value_tier text, as_of_date date, plan_period text,
                tier_rank integer, service_level text, customers bigint, allocated_budget numeric,
                expected_return numeric, plan_mode text);
            create table bi.allocation_plan_customer (customer_id text, as_of_date date, plan_period text,
                value_tier text, primary_action text, action_reason text, allocated_budget numeric,
                expected_return numeric, plan_mode text);
            create table bi.account_alerts (as_of_date date, alert_id text, customer_id text,
                customer_name text, value_tier text, alert_type text, severity text, owner text, reason text,
                metric_value numeric, threshold numeric);
            create table bi.sales_kpis (month_start_date date, region text, channel text, as_of_date date,
                is_complete_month boolean, covered_customers bigint, active_customers bigint, orders bigint,
                revenue numeric, previous_revenue numeric, revenue_change numeric,
                covered_customers_effect numeric, active_rate_effect numeric,
                revenue_per_active_effect numeric, new_customers bigint, churned_customers bigint);
            create table bi.data_quality_results (like tierflow_meta.data_quality_results including defaults);
            """
        )
        with conn.cursor() as cur:
            cur.executemany(
                "insert into bi.dim_customers values (%s, %s)",
                [("c1", EVIL_NAME), ("c2", "Beta GmbH"), ("c3", None), ("c4", "Delta"), ("c5", "Eps")],
            )
            cur.executemany(
                "insert into bi.customer_tiers values (%s, %s, %s, %s, %s, %s, %s, %s, %s)", TIERS
            )
            cur.executemany(
                "insert into bi.customer_profitability values (%s, %s, %s, %s, %s, %s)",
                [(c, AS_OF, rank, net, share, net < 0) for c, rank, net, share in PROFIT],
            )
            cur.executemany(
                "insert into bi.tier_migrations values (%s, %s, %s, %s, %s)",
                [(AS_OF, *m) for m in MIGRATIONS],
            )
            cur.executemany(
                "insert into bi.allocation_plan_tier"
                " values (%s, %s, '2026-11', %s, %s, %s, %s, %s, 'policy')",
                [(t, AS_OF, *rest) for t, *rest in ALLOCATION],
            )
            cur.executemany(
                "insert into bi.allocation_plan_customer values (%s, %s, '2026-11', %s, %s, %s, %s, %s, %s)",
                PLAN,
            )
            cur.executemany(
                "insert into bi.account_alerts values (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1, 1)",
                [(a, f"{a}:{t}:{c}", c, n, tier, t, sev, o, r) for a, c, n, tier, t, sev, o, r in ALERTS],
            )
            cur.executemany(
                "insert into bi.sales_kpis values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s)",
                [
                    (m, reg, ch, AS_OF, done, cov, act, act, *rest)
                    for m, reg, ch, done, cov, act, *rest in SALES
                ],
            )
            cur.executemany(
                "insert into bi.data_quality_results (run_id, as_of_date, suite, data_asset, expectation,"
                " column_name, severity, success, observed_value)"
                " values (%s, %s, %s, 'asset', %s, %s, %s, %s, %s)",
                [
                    (run, AS_OF, suite, exp, col, sev, ok, obs)
                    for run, suite, exp, col, sev, ok, obs in QUALITY
                ],
            )
            for run, path, system, entity, rows_in, loaded, rejected, reasons in LOADS:
                load_id = cur.execute(
                    "insert into tierflow_meta.load_audit (run_id, file_path, system, entity, business_date,"
                    " checksum, size_bytes, rows_in, rows_loaded, rows_rejected, status)"
                    " values (%s, %s, %s, %s, %s, 'x', 1, %s, %s, %s, 'loaded') returning load_id",
                    (run, path, system, entity, AS_OF, rows_in, loaded, rejected),
                ).fetchone()[0]
                cur.executemany(
                    "insert into tierflow_meta.rejects values (%s, %s, %s, %s, %s, '{}', %s)",
                    [(load_id, path, f"{system}/{entity}", AS_OF, i + 2, r) for i, r in enumerate(reasons)],
                )
            cur.execute(
                "insert into tierflow_meta.runs (run_id, as_of_date, status) values (%s, %s, 'published')",
                (RUN, AS_OF),
            )


class _Tables(HTMLParser):
    """data-table name -> rows of cell texts (entities decoded), and every tag's attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.attrs: list[tuple[str, str, str]] = []
        self.style = ""
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag == "table":
            self._table = dict(attrs).get("data-table")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_style:
            self.style += data


def text_of(page: str, line: str) -> str:
    """The text of the element with data-line="<line>", tags dropped, entities decoded."""
    found = re.search(rf'<p[^>]* data-line="{line}"[^>]*>(.*?)</p>', page, re.S)
    assert found, f'no data-line="{line}" in the report'
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


def parse(page: str) -> _Tables:
    p = _Tables()
    p.feed(page)
    return p


def assert_self_contained(parsed: _Tables) -> None:
    for tag, name, value in parsed.attrs:
        if name in ("src", "href", "xlink:href", "srcset", "action", "poster", "data"):
            assert not re.match(r"\s*(https?:)?//", value, re.I), (
                f"<{tag} {name}={value!r}> fetches from the net"
            )
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), f"<{tag}> in the report"
    assert "url(" not in parsed.style and "@import" not in parsed.style


# Counted in the browser: per data-chart svg its rendered box, the data marks (class "mark")
# drawn with a non-zero box, and the texts drawn; plus every resource the page fetched.
PROBE = """<script>
const charts = [...document.querySelectorAll('svg[data-chart]')].map(s => {
  const box = s.getBoundingClientRect();
  const marks = [...s.querySelectorAll('.mark')].filter(e => {
    const b = e.getBBox();
    return e.tagName === 'path' ? (b.width > 0 || b.height > 0) : (b.width > 0 && b.height > 0);
  }).length;
  const texts = [...s.querySelectorAll('text')].filter(e => e.getBBox().width > 0).length;
  return {chart: s.dataset.chart, width: box.width, height: box.height, marks, texts};
});
const out = document.createElement('pre');
out.id = 'probe';
out.textContent = JSON.stringify({charts,
  resources: performance.getEntriesByType('resource').map(e => e.name)});
document.body.appendChild(out);
</script>"""


def chromium(*args: str, profile: Path) -> str:
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--hide-scrollbars",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc.stdout


def probe_in_browser(report: Path, tmp_path: Path) -> dict:
    probed = tmp_path / "probed.html"
    probed.write_text(
        report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8"
    )
    dom = chromium("--window-size=1280,4000", "--dump-dom", probed.as_uri(), profile=tmp_path / "profile")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run in chromium: {dom[:500]}"
    return json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


# Data marks expected per chart, from the rows above:
#   tier-mix 3 tiers x 2 series; tier-trend 2 dates x 3 tiers; whale-curve 1 curve + 2 marked
#   points; tier-migrations 4 from-rows (new, high, medium, low) x 3 to-columns;
#   allocation 3 tiers x 2 series; actions 4 actions x 3 series (customers, budget, expected return);
#   alerts: churn_risk critical + warning, revenue_drop warning, credit critical, tier_downgrade
#   critical = 5 segments (zero segments are not drawn);
#   kpi-decomposition the change + 3 effects; quality: raw.erp_orders passed,
#   marts.customer_tiers passed and failed (warning), zero segments are not drawn; rejects 3 reasons
EXPECTED_MARKS = {
    "tier-mix": 6,
    "tier-trend": 6,
    "whale-curve": 3,
    "tier-migrations": 12,
    "allocation": 6,
    "actions": 12,
    "alerts": 5,
    "kpi-decomposition": 4,
    "quality": 3,
    "rejects": 3,
    "plan-uplift": 2,  # high and medium; low has no control group (build_outcome_tables)
    "retention": 6,
}


def build_outcome_tables(url: str) -> None:
    """bi.plan_performance and bi.cohort_retention (docs/closing-the-loop.md) for AS_OF.

    plan_performance: plan period 2026-10 (the last closed one; 2026-09 is older and not shown):
    high 1 treated / 1 control, uplift +500 without an interval; medium 10 / 2, +1,200 with the
    interval +200 .. +2,200 (above 0: earned more than control); low without control: no bar.
    cohort_retention: 2026-09 in two tiers of 2 customers each, active 2+2, 1+0, 1+1 of 4 ->
    100%, 25%, 50%; 2026-10 3 customers, 3 then 1 active; 2026-11 1 customer. 6 cells.
    """
    with psycopg.connect(url) as conn:
        conn.execute(
            """
            create table bi.plan_performance (plan_period text, plan_as_of_date date, period_start_date date,
                period_end_date date, value_tier text, tier_rank integer, primary_action text,
                treated_customers bigint, control_customers bigint, budget_spent numeric,
                expected_return numeric, uplift_per_customer numeric, uplift_ci_low numeric,
                uplift_ci_high numeric, uplift_total numeric, uplift_total_ci_low numeric,
                uplift_total_ci_high numeric, realised_roi numeric, expected_roi numeric,
                interval_z numeric, as_of_date date);
            create table bi.cohort_retention (cohort_month date, cohort text, months_since integer,
                value_tier text, customers bigint, active_customers bigint, as_of_date date);
            """
        )
        perf = [
            ("2026-10", "high", 1, "all", 1, 1, 6000, 300, 500, None, None, 500, None, None, .0833, .05),
            ("2026-10", "medium", 2, "all", 10, 2, 3000, 150, 120, 20, 220, 1200, 200, 2200, .4, .05),
            ("2026-10", "medium", 2, "develop", 10, 2, 3000, 150, 120, 20, 220, 1200, 200, 2200, .4, .05),
            ("2026-10", "low", 3, "all", 5, 0, 1000, 10, None, None, None, None, None, None, None, .01),
            ("2026-09", "high", 1, "all", 1, 1, 6000, 300, -900, None, None, -900, None, None, -.15, .05),
        ]
        for p, tier, rank, action, n_t, n_c, budget, ret, up, lo, hi, total, tlo, thi, roi, eroi in perf:
            end = "2026-10-31" if p == "2026-10" else "2026-09-30"
            conn.execute(
                "insert into bi.plan_performance values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, %s, %s, %s, %s, 1.959964, %s)",
                (p, end, p + "-01", end, tier, rank, action, n_t, n_c, budget, ret, up, lo, hi, total, tlo,
                 thi, roi, eroi, AS_OF),
            )
        cells = [("2026-09", "high", [2, 1, 1], 2), ("2026-09", "low", [2, 0, 1], 2),
                 ("2026-10", "high", [3, 1], 3), ("2026-11", "low", [1], 1)]
        for cohort, tier, active, n in cells:
            for k, a in enumerate(active):
                conn.execute(
                    "insert into bi.cohort_retention values (%s, %s, %s, %s, %s, %s, %s)",
                    (date.fromisoformat(cohort + "-01"), cohort, k, tier, n, a, AS_OF),
                )


def test_report_known_answers_and_renders_in_chromium(warehouse_url: str, tmp_path: Path) -> None:
    build_published_tables(warehouse_url)
    build_outcome_tables(warehouse_url)
    out = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "2026-11-20" / "report.html", LINKS)
    page = out.read_text(encoding="utf-8")
    parsed = parse(page)
    t = parsed.tables

    assert t["tier-mix"][1:] == [
        ["high", "1", "20.0%", "6,000.00", "60.0%", "-1"],
        ["medium", "2", "40.0%", "3,000.00", "30.0%", "+1"],
        ["low", "2", "40.0%", "1,000.00", "10.0%", "+1"],
        ["all", "5", "100.0%", "10,000.00", "100.0%", ""],
    ]
    assert t["tier-mix"][0][-1] == "vs 2026-11-19"
    assert t["tier-trend"][1:] == [["2026-11-20", "1", "2", "2", "5"], ["2026-11-19", "2", "1", "1", "4"]]
    assert dict(t["whale-curve"][1:]) == {
        "customers ranked": "5",
        "total net contribution": "6,000.00",
        "loss-making customers": "2 (40.0%)",
        "peak of the curve": "133.3% after 3 customers (60.0%)",
        "held by the best 10% (1 customer)": "83.3%",
        "held by the best 20% (1 customer)": "83.3%",
        "held by the best 50% (3 customers)": "133.3%",
    }
    assert t["top-contributors"][1] == ["1", "c1", EVIL_NAME, "5,000.00", "83.3%"]
    assert t["tier-migrations"][1:] == [
        ["new customers", "1", "20.0%", "400.00"],
        ["moved up", "0", "0.0%", "0.00"],
        ["stayed", "3", "60.0%", "7,600.00"],
        ["moved down", "1", "20.0%", "2,000.00"],
        ["all", "5", "100.0%", "10,000.00"],
    ]
    assert text_of(page, "tier-changes") == (
        "Tonight: 0 moved up 1 moved down 3 kept their tier 1 new customer 1 held in its tier by "
        "hysteresis 1 tier set by a manual override 2 high-potential customers"
    )
    assert t["allocation"][1:] == [
        ["high", "dedicated account manager", "1", "600,000.00", "60.0%", "600,000.00", "90,000.00", "15.0%"],
        ["medium", "pooled sales team", "2", "300,000.00", "30.0%", "150,000.00", "60,000.00", "20.0%"],
        ["low", "self-service", "2", "100,000.00", "10.0%", "50,000.00", "17,000.00", "17.0%"],
        ["all", "", "5", "1,000,000.00", "100.0%", "200,000.00", "167,000.00", "16.7%"],
    ]
    assert text_of(page, "allocation") == (
        "Plan period 2026-11 · plan mode policy · total expected return 167,000.00 on a budget of "
        "1,000,000.00 (ROI 16.7%)"
    )
    assert t["actions"][1:] == [
        ["retain", "1", "600,000.00", "90,000.00", "15.0%"],
        ["win back", "1", "200,000.00", "30,000.00", "15.0%"],
        ["convert potential", "2", "160,000.00", "45,000.00", "28.1%"],
        ["credit review", "1", "40,000.00", "2,000.00", "5.0%"],
        ["all", "5", "1,000,000.00", "167,000.00", "16.7%"],
    ]
    assert text_of(page, "plan") == "Plan mode policy · plan period 2026-11"
    assert t["top-budget"][1:] == [
        [
            "1",
            "c1",
            EVIL_NAME,
            "high",
            "600,000.00",
            "90,000.00",
            "retain",
            "Best tier: keep the relationship.",
        ],
        [
            "2",
            "c2",
            "Beta GmbH",
            "medium",
            "200,000.00",
            "30,000.00",
            "win back",
            "Declining medium-tier customer.",
        ],
        [
            "3",
            "c3",
            "",
            "medium",
            "100,000.00",
            "30,000.00",
            "convert potential",
            "High potential in the medium tier.",
        ],
        [
            "4",
            "c5",
            "Eps",
            "low",
            "60,000.00",
            "15,000.00",
            "convert potential",
            "High potential in the low tier.",
        ],
        ["5", "c4", "Delta", "low", "40,000.00", "2,000.00", "credit review", CREDIT_REASON],
    ]
    assert t["alerts-by-type"] == [
        ["alert type", "critical", "warning", "all"],
        ["churn risk", "1", "1", "2"],
        ["revenue drop", "0", "1", "1"],
        ["credit", "1", "0", "1"],
        ["tier downgrade", "1", "0", "1"],
        ["all", "3", "2", "5"],
    ]
    assert t["alerts-by-owner"][1:] == [
        ["Amy", "2", "2", "0", "1"],
        ["Bob", "2", "1", "1", "1"],
        ["unassigned", "1", "0", "1", "1"],
        ["all", "5", "3", "2", "3"],
    ]
    assert t["alerts-critical"][1:] == [
        ["Amy", "c1", EVIL_NAME, "high", "churn risk", "no order for 70 days"],
        ["Amy", "c1", EVIL_NAME, "high", "credit", "credit risk high <60%>"],
        ["Bob", "c2", "Beta GmbH", "medium", "tier downgrade", "fell from high"],
    ]
    # newest month first; Nov: covered 17, active 5 (29.4%), 4000 / 5 = 800, change -5600 =
    # 0 - 4800 - 800
    assert t["sales-kpis"][1:3] == [
        [
            "2026-11 (to date)",
            "17",
            "5",
            "29.4%",
            "800.00",
            "4,000.00",
            "-5,600.00",
            "0.00",
            "-4,800.00",
            "-800.00",
            "0",
            "2",
        ],
        [
            "2026-10",
            "17",
            "10",
            "58.8%",
            "960.00",
            "9,600.00",
            "+3,100.00",
            "+800.00",
            "+700.00",
            "+1,600.00",
            "2",
            "0",
        ],
    ]
    assert t["sales-kpis"][3][6] == "–"  # September has no previous month
    assert "Revenue change 2026-09 to 2026-10" in page  # the waterfall decomposes October
    assert t["plan-performance"][1:] == [
        ["high", "1", "1", "6,000.00", "300.00", "+500.00", "–", "8.33%", "5.00%",
         "too few customers for an interval"],
        ["medium", "10", "2", "3,000.00", "150.00", "+1,200.00", "+200.00 to +2,200.00", "40.00%", "5.00%",
         "earned more than control"],
        ["low", "5", "0", "1,000.00", "10.00", "–", "–", "–", "1.00%", "no control group: not measured"],
    ]
    assert t["plan-performance"][0][6] == "95% interval"
    assert t["plan-performance-actions"][1:] == [
        ["medium", "develop", "10", "2", "3,000.00", "+120.00", "+20.00 to +220.00",
         "earned more than control"]
    ]
    assert "Plan period <b>2026-10</b>, the plan published on 2026-10-31" in page
    # the retention triangle: 2026-09 over both tiers 4 customers, 100%, 25%, 50% active
    assert "2026-09 +1: 25.0% active" in page and "2026-09 +2: 50.0% active" in page
    assert "2026-11 +1" not in page  # a month the cohort has not reached stays empty
    assert t["quality"][1:] == [
        ["marts.customer_tiers", "3", "2", "1", "0"],
        ["raw.erp_orders", "3", "3", "0", "0"],
        ["all", "6", "5", "1", "0"],
    ]
    assert t["quality-failed"][1:] == [
        [
            "marts.customer_tiers",
            "expect_column_mean_to_be_between",
            "value_score",
            "warning",
            "FAILED",
            "<i>0.91</i>",
        ]
    ]
    assert len(t["quality-all"]) == 1 + 6
    assert t["loads"][1] == ["2", "15", "11", "4"]
    assert t["rejects"][1:] == [
        ["bad int in quantity: 'x'", "erp/orders/2026-11-20/orders.csv", "2"],
        [EVIL_REASON, "crm/customers/2026-11-20/customers.csv", "1"],
        ["unknown currency 'XYZ'", "erp/orders/2026-11-20/orders.csv", "1"],
        ["all", "2 files", "4"],
    ]
    # texts from data are escaped: the name and reasons appear only as text
    assert "<script>" not in page and "<img" not in page and "<i>" not in page
    assert "<review terms>" not in page and "<60%>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Söhne" in page
    hrefs = [v for tag, k, v in parsed.attrs if tag == "a" and k == "href" and not v.startswith("#")]
    assert hrefs == list(LINKS.values())
    assert_self_contained(parsed)
    assert sorted(re.findall(r'data-chart="([^"]+)"', page)) == sorted(EXPECTED_MARKS)

    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    probe = probe_in_browser(out, tmp_path)
    assert probe["resources"] == [], f"the report fetched {probe['resources']}"
    drawn = {c["chart"]: c for c in probe["charts"]}
    assert sorted(drawn) == sorted(EXPECTED_MARKS)
    for name, marks in EXPECTED_MARKS.items():
        c = drawn[name]
        assert c["width"] > 200 and c["height"] > 80, f"{name} rendered at {c['width']} x {c['height']}"
        assert c["marks"] == marks, f"{name}: {c['marks']} data marks drawn, expected {marks}"
        assert c["texts"] >= 3, f"{name}: only {c['texts']} labels drawn"
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,6400", out.as_uri(), profile=tmp_path / "profile")
    # the report is ~6,300 px tall; a blank 1280 x 6400 page is ~37 KB as PNG, this report ~640 KB;
    # to look at it: pytest tests/test_report.py --basetemp=/tmp/rt, then open /tmp/rt/*current/report.png
    assert shot.stat().st_size > 100_000, f"the screenshot is (nearly) blank: {shot.stat().st_size} bytes"


def test_report_without_previous_run_or_migrations_table(warehouse_url: str, tmp_path: Path) -> None:
    build_published_tables(warehouse_url)
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("delete from bi.tier_migrations")
    page = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "a.html").read_text(encoding="utf-8")
    assert "No previous run to compare with: there are no tier migrations for 2026-11-20." in page
    assert 'data-chart="tier-migrations"' not in page
    assert 'data-chart="whale-curve"' in page  # the other sections are still there

    with psycopg.connect(warehouse_url) as conn:
        conn.execute("drop table bi.tier_migrations")
    page = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "b.html").read_text(encoding="utf-8")
    assert "Table bi.tier_migrations does not exist in the warehouse (not published yet)" in page


def test_report_top_budget_and_critical_lists_are_cut_and_empty_or_missing_tables_say_so(
    warehouse_url: str, tmp_path: Path
) -> None:
    build_published_tables(warehouse_url)
    with psycopg.connect(warehouse_url) as conn:
        # 8 more planned customers at 45,000: by budget c1 600000, c2 200000, c3 100000, c5 60000,
        # then x01..x08 at 45000 (ties by customer id), c4 40000 -> the top 10 end with x06
        conn.cursor().executemany(
            "insert into bi.allocation_plan_customer values (%s, %s, '2026-11', 'low', 'develop', 'r', 45000,"
            " 0, 'policy')",
            [(f"x{i:02}", AS_OF) for i in range(1, 9)],
        )
        # 60 more critical alerts for Zoe: 3 + 60 = 63 critical; the first 50 by owner, customer
        # and type are Amy's 2, Bob's 1 and z01..z47 -> "... and 63 - 50 = 13 more"
        conn.execute(
            "insert into bi.account_alerts select %s, 'id' || g, 'z' || lpad(g::text, 2, '0'), 'Z', 'high',"
            " 'churn_risk', 'critical', 'Zoe', 'gone', 1, 1 from generate_series(1, 60) g",
            (AS_OF,),
        )
    page = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "a.html").read_text(encoding="utf-8")
    t = parse(page).tables
    assert [r[1] for r in t["top-budget"][1:]] == ["c1", "c2", "c3", "c5", *(f"x{i:02}" for i in range(1, 7))]
    assert "The 10 customers with the most budget:" in page
    critical = t["alerts-critical"][1:]
    assert len(critical) == 50 and critical[3][:2] == ["Zoe", "z01"] and critical[-1][:2] == ["Zoe", "z47"]
    assert "63 critical alerts:" in page and "… and 13 more critical alerts in bi.account_alerts." in page
    assert t["alerts-by-owner"][1] == ["Zoe", "60", "60", "0", "60"]

    with psycopg.connect(warehouse_url) as conn:
        conn.execute("delete from bi.account_alerts where severity = 'critical'")
    page = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "b.html").read_text(encoding="utf-8")
    assert "No critical alerts." in page and 'data-table="alerts-critical"' not in page
    assert parse(page).tables["alerts-by-type"][-1] == ["all", "0", "2", "2"]

    with psycopg.connect(warehouse_url) as conn:
        conn.execute("delete from bi.account_alerts")
        conn.execute("delete from bi.allocation_plan_customer")
    page = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "c.html").read_text(encoding="utf-8")
    assert "No account alerts for 2026-11-20: no customer needs an owner&#x27;s attention." in page
    assert "No customer plan for 2026-11-20." in page
    assert 'data-chart="alerts"' not in page and 'data-chart="actions"' not in page
    assert 'data-table="alerts-by-owner"' not in page and 'data-table="top-budget"' not in page

    with psycopg.connect(warehouse_url) as conn:
        conn.execute("drop table bi.account_alerts; drop table bi.allocation_plan_customer")
    page = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "d.html").read_text(encoding="utf-8")
    assert "Table bi.account_alerts does not exist in the warehouse (not published yet)" in page
    assert "Table bi.allocation_plan_customer does not exist in the warehouse (not published yet)" in page
    assert 'data-chart="allocation"' in page  # the tier plan is still shown


def test_report_refuses_absolute_links(tmp_path: Path) -> None:
    # checked before the warehouse is touched: this URL is never connected to
    with pytest.raises(ValueError, match="'Data Docs' -> 'https://example.com/docs' must be a relative URL"):
        render_report(
            "postgresql://nobody@127.0.0.1:1/none",
            "bi",
            AS_OF,
            RUN,
            tmp_path / "r.html",
            {"Data Docs": "https://example.com/docs"},
        )
    assert not (tmp_path / "r.html").exists()


def test_every_registered_section_is_in_the_contents_and_the_body_in_order(
    warehouse_url: str, tmp_path: Path
) -> None:
    """The page takes its table of contents and its body from one registry (report.sections)."""
    from tierflow.report.sections import SECTIONS

    build_published_tables(warehouse_url)
    build_outcome_tables(warehouse_url)
    page = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "a.html").read_text(encoding="utf-8")
    toc = re.search(r'<p class="toc">(.*?)</p>', page).group(1)
    assert toc == "".join(f'<a href="#{s.anchor}">{html.escape(s.label)}</a>' for s in SECTIONS)
    assert re.findall(r'<section id="([^"]+)">', page) == [s.anchor for s in SECTIONS]



CLV_FIT_SQL = (
    "insert into bi.clv_model_fits (as_of_date, model, fit_id, fitted_as_of_date, status, is_in_use,"
    " parameters, n_customers, converged, holdout_days, holdout_error, max_holdout_error,"
    " holdout_buckets, note) values (%s, %s, %s, %s, %s, %s, %s, %s, true, %s, %s, 0.35, %s, %s)"
)


def test_report_clv_section(warehouse_url: str, tmp_path: Path) -> None:
    """The CLV section: the fit in use, its holdout check as a chart, a rejected candidate,
    a night without a fit, and a warehouse without the tables."""
    from psycopg import sql
    from tierflow.clv.store import CLV_COLUMNS, FITS_COLUMNS

    build_published_tables(warehouse_url)
    page = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "a.html").read_text(encoding="utf-8")
    assert "Table bi.clv_model_fits does not exist in the warehouse (not published yet)" in page

    buckets = json.dumps([{"bucket": "0", "customers": 3, "predicted": 2.5, "actual": 2},
                          {"bucket": "7+", "customers": 2, "predicted": 9.5, "actual": 10}])
    reused, fitted = "reused: within the refit period", date(2026, 11, 18)
    with psycopg.connect(warehouse_url) as conn:
        for table, columns in (("customer_clv", CLV_COLUMNS), ("clv_model_fits", FITS_COLUMNS)):
            defs = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t.replace(" not null", "")))
                for n, t, _ in columns
            )
            conn.execute(sql.SQL("create table {} ({})").format(sql.Identifier("bi", table), defs))
        conn.execute(CLV_FIT_SQL, (AS_OF, "bg_nbd", "clv-2026-11-18", fitted, "reused", True,
                                   '{"r": 0.5, "alpha": 10, "a": 1, "b": 3}', 5, 90, 0.25, buckets, reused))
        conn.execute(CLV_FIT_SQL, (AS_OF, "gamma_gamma", "clv-2026-11-18", fitted, "reused", True,
                                   '{"p": 6, "q": 4, "v": 60}', 4, None, None, None, reused))
        conn.execute(
            "insert into bi.customer_clv (customer_id, as_of_date, fit_id, probability_alive,"
            " predicted_clv_12m) values ('c1', %s, 'clv-2026-11-18', 0.5, 100),"
            " ('c2', %s, 'clv-2026-11-18', 1, 50)",
            (AS_OF, AS_OF),
        )
    page = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "b.html").read_text(encoding="utf-8")
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
    assert 'data-chart="clv-holdout"' in page
    assert "Fit in use clv-2026-11-18 (reused: within the refit period)." in text
    assert "BG/NBD a 1, alpha 10, b 3, r 0.5 on 5 customers" in text
    # mean P(alive) (0.5 + 1) / 2 = 0.75; CLV 100 + 50 = 150
    assert "2 customers scored, mean P(alive) 0.75, predicted 12-month CLV 150.00 in all." in text
    # error .25 <= bound .35
    assert ("Holdout error 25.0% (sum over buckets of |predicted - actual| / actual), bound 35%: passed."
            in text)
    assert "0 repeat purchases (3 customers)" in text and "7+ repeat purchases (2 customers)" in text

    rejected = "fitted on A's summary; not used: holdout error 0.5000 > 0.35"
    with psycopg.connect(warehouse_url) as conn:
        conn.execute(CLV_FIT_SQL, (AS_OF, "bg_nbd", "clv-2026-11-20", AS_OF, "rejected", False,
                                   '{"r": 1}', 5, 90, 0.5, buckets, rejected))
    page = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "c.html").read_text(encoding="utf-8")
    assert f"Tonight's fit was not used: {rejected}" in html.unescape(page)

    with psycopg.connect(warehouse_url) as conn:
        conn.execute("delete from bi.clv_model_fits; delete from bi.customer_clv")
        conn.execute(CLV_FIT_SQL, (AS_OF, "bg_nbd", "clv-2026-11-20", None, "not_fitted", False, None, 8,
                                   None, None, None, "no fit in use: 8 customers with a purchase"))
    page = render_report(warehouse_url, "bi", AS_OF, RUN, tmp_path / "d.html").read_text(encoding="utf-8")
    assert "No CLV fit in use: no fit in use: 8 customers with a purchase" in page
    assert 'data-chart="clv-holdout"' not in page
