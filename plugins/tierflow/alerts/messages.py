"""The account-alert e-mail: one plain-text message per owner, UTF-8 throughout."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

# most urgent first; unknown severities sort after these, by name
SEVERITY_ORDER = ("critical", "high", "medium", "warning", "low", "info")


@dataclass(frozen=True)
class Alert:
    """One row of bi.account_alerts (the columns the e-mail shows)."""

    alert_id: str
    customer_id: str
    customer_name: str | None
    value_tier: str | None
    alert_type: str
    severity: str
    owner: str
    reason: str
    metric_value: Decimal | None
    threshold: Decimal | None


def sort_key(alert: Alert) -> tuple:
    sev = alert.severity.lower()
    rank = SEVERITY_ORDER.index(sev) if sev in SEVERITY_ORDER else len(SEVERITY_ORDER)
    return (rank, sev, alert.customer_id, alert.alert_type, alert.alert_id)


def _number(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return f"{value.normalize():f}" if isinstance(value, Decimal) else str(value)


def subject(owner: str, as_of: date, count: int, is_update: bool = False) -> str:
    text = f"tierflow: {count} account alert{'s' if count != 1 else ''} for {owner} on {as_of.isoformat()}"
    return f"{text} (updated)" if is_update else text


def body(
    owner: str, as_of: date, run_id: str, alerts: list[Alert], publish_schema: str, is_update: bool = False
) -> str:
    lines = [
        f"Account alerts for {owner}, as of {as_of.isoformat()}: {len(alerts)}.",
        "",
    ]
    if is_update:
        lines[1:1] = [
            "This replaces the list you received earlier for the same date: the date was run again",
            "and its alerts changed.",
            "",
        ]
    for n, a in enumerate(alerts, start=1):
        who = f"{a.customer_name} ({a.customer_id})" if a.customer_name else a.customer_id
        tier = f", {a.value_tier} tier" if a.value_tier else ""
        lines += [
            f"{n}. [{a.severity}] {a.alert_type}: {who}{tier}",
            f"   {a.reason}",
            f"   value {_number(a.metric_value)}, threshold {_number(a.threshold)}",
            "",
        ]
    lines += [
        f"All alerts are in {publish_schema}.account_alerts (as_of_date = '{as_of.isoformat()}').",
        f"tierflow run {run_id}",
    ]
    return "\n".join(lines) + "\n"


def compose(
    sender: str,
    recipient: str,
    owner: str,
    is_owner_address: bool,
    as_of: date,
    run_id: str,
    alerts: list[Alert],
    publish_schema: str,
    is_update: bool = False,
) -> EmailMessage:
    """The message; the owner's name is the display name only when the address is theirs."""
    msg = EmailMessage()
    msg["Subject"] = subject(owner, as_of, len(alerts), is_update)
    msg["From"] = Address("tierflow", addr_spec=sender)
    msg["To"] = Address(owner if is_owner_address else "", addr_spec=recipient)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg["X-Tierflow-Run-Id"] = run_id
    # base64 keeps the UTF-8 body intact through servers without 8BITMIME
    msg.set_content(
        body(owner, as_of, run_id, alerts, publish_schema, is_update), charset="utf-8", cte="base64"
    )
    return msg
