"""The account alerts section: who must act on which customer tonight (bi.account_alerts)."""

from __future__ import annotations

from tierflow.report import svg
from tierflow.report.html import (
    FAIL,
    WARN,
    Section,
    esc,
    fmt_int,
    missing,
    note,
    row,
    section,
    table,
)
from tierflow.report.queries import CRITICAL, Alerts, ReportData
from tierflow.report.reading import Missing

OTHER_SEVERITY = "#5d6d7e"
# account_alerts.alert_type in the order the report shows them (others after, by name)
ALERT_TYPES = ("churn_risk", "revenue_drop", "credit", "tier_downgrade")


def _alert_label(alert_type: str) -> str:
    return alert_type.replace("_", " ")


def alerts_section(d: ReportData) -> str:
    intro = (
        "Customers someone must act on tonight (account_alerts): churn risk against the customer's own "
        "gap between orders, a sharp revenue drop, high credit risk, a fall from the top tier. Critical "
        "= a top-tier customer or a top-tier downgrade. The owner is the account manager."
    )
    title = "Account alerts"
    al = d.alerts
    if isinstance(al, Missing):
        return section("alerts", title, intro, missing(al))
    assert isinstance(al, Alerts)
    if not al.counts:
        return section(
            "alerts",
            title,
            intro,
            note(f"No account alerts for {d.as_of.isoformat()}: no customer needs an owner's attention."),
        )
    known = [t for t in ALERT_TYPES if any(k[0] == t for k in al.counts)]
    types = known + sorted({t for t, _ in al.counts} - set(known))
    severities = [CRITICAL, "warning"]
    severities += sorted({s for _, s in al.counts} - set(severities))
    colors = {CRITICAL: FAIL, "warning": WARN}
    chart = svg.hbars(
        "alerts",
        "Alerts by type and severity",
        [_alert_label(t) for t in types],
        [(s, colors.get(s, OTHER_SEVERITY), [al.counts.get((t, s), 0) for t in types]) for s in severities],
        fmt_int,
        stacked=True,
        integer=True,
    )
    by_type = table(
        "alerts-by-type",
        ["alert type", *severities, "all"],
        [
            [
                _alert_label(t),
                *(fmt_int(al.counts.get((t, s), 0)) for s in severities),
                fmt_int(sum(al.counts.get((t, s), 0) for s in severities)),
            ]
            for t in types
        ],
        numeric=tuple(range(1, len(severities) + 2)),
        total=[
            "all",
            *(fmt_int(sum(n for (_, s2), n in al.counts.items() if s2 == s)) for s in severities),
            fmt_int(sum(al.counts.values())),
        ],
    )
    owners = table(
        "alerts-by-owner",
        # severity is critical or warning (the mart's accepted values): "warning" = not critical
        ["owner", "alerts", "critical", "warning", "customers"],
        [
            [
                o["owner"],
                fmt_int(o["alerts"]),
                fmt_int(o["critical"]),
                fmt_int(o["other"]),
                fmt_int(o["customers"]),
            ]
            for o in al.owners
        ],
        numeric=(1, 2, 3, 4),
        total=[
            "all",
            fmt_int(sum(o["alerts"] for o in al.owners)),
            fmt_int(sum(o["critical"] for o in al.owners)),
            fmt_int(sum(o["other"] for o in al.owners)),
            # a customer has one owner (its account manager), so the owners' customers add up
            fmt_int(sum(o["customers"] for o in al.owners)),
        ],
        wrap=(0,),
    )
    body = row(chart, by_type) + "<p>Alerts per owner:</p>" + owners
    if al.critical:
        body += f'<p class="bad">{esc(fmt_int(al.critical_total))} critical alerts:</p>'
        body += table(
            "alerts-critical",
            ["owner", "customer", "name", "tier", "alert", "reason"],
            [
                [
                    c["owner"],
                    c["customer_id"],
                    c["customer_name"] or "",
                    c["value_tier"] or "",
                    _alert_label(c["alert_type"]),
                    c["reason"] or "",
                ]
                for c in al.critical
            ],
            wrap=(0, 2, 5),
            nowrap=(4,),
        )
        if al.critical_total > len(al.critical):
            body += (
                f"<p>… and {esc(fmt_int(al.critical_total - len(al.critical)))} more critical alerts in "
                f"{esc(d.publish_schema)}.account_alerts.</p>"
            )
    else:
        body += '<p class="good">No critical alerts.</p>'
    return section("alerts", title, intro, body)


def alerts_tiles(d: ReportData) -> list[tuple[str, str]]:
    if not isinstance(d.alerts, Alerts):
        return []
    n = sum(d.alerts.counts.values())
    return [(fmt_int(n), f"account alerts, {fmt_int(d.alerts.critical_total)} critical")]


ALERTS = Section("alerts", "Alerts", alerts_section, alerts_tiles)
