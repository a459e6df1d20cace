"""Account-alert e-mails (tierflow.alerts) against a real SMTP server on 127.0.0.1.

Why: an account manager must get exactly one e-mail per run listing their own alerts, with
the customers' names intact (Chinese included); the fallback address collects the rest; and a
checkout without SMTP settings must send nothing and not fail.
"""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest
from aiosmtpd.controller import Controller
from tierflow.alerts import send_alert_emails
from tierflow.config import NotificationsConfig
from tierflow.settings import SmtpSettings, load_settings

AS_OF = date(2026, 3, 31)

ALERTS_DDL = """
create schema bi;
create table bi.account_alerts (
    as_of_date date, alert_id text, customer_id text, customer_name text, value_tier text,
    alert_type text, severity text, owner text, reason text, metric_value numeric, threshold numeric
);
"""
ALERTS = [
    # owner 王芳: two alerts (high before medium), one of them for a Chinese customer name
    (
        AS_OF,
        "a1",
        "C01",
        "上海华东贸易有限公司",
        "high",
        "churn_risk",
        "medium",
        "王芳",
        "No order for 96 days, 3.2 x the usual gap of 30 days.",
        96,
        90,
    ),
    (
        AS_OF,
        "a2",
        "C02",
        "Acme Ltd",
        "high",
        "credit",
        "high",
        "王芳",
        "Overdue share 62% of open receivables (threshold 50%).",
        0.62,
        0.5,
    ),
    # owner Li Lei: one alert, no address configured -> the fallback address
    (
        AS_OF,
        "a3",
        "C03",
        "北京星河科技",
        "medium",
        "revenue_drop",
        "high",
        "Li Lei",
        "Revenue down 55% on the previous 90 days.",
        -0.55,
        -0.5,
    ),
    # another date: not sent
    (date(2026, 3, 30), "a0", "C09", "Old Co", "high", "churn_risk", "high", "王芳", "old", 1, 1),
]


class Inbox:
    """aiosmtpd handler: keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def alerts_db(warehouse_url: str) -> str:
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(ALERTS_DDL)
        with conn.cursor() as cur:
            cur.executemany(
                "insert into bi.account_alerts values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", ALERTS
            )
    return warehouse_url


NOTIFY = NotificationsConfig(
    recipients={"王芳": "wang.fang@example.com"}, fallback_recipient="sales-ops@example.com"
)


def test_one_email_per_owner_with_their_alerts(alerts_db: str, smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    smtp = SmtpSettings(host="127.0.0.1", port=port, sender="tierflow@example.com")
    summary = send_alert_emails(alerts_db, "bi", AS_OF, "run-1", NOTIFY, smtp)
    assert summary == {"owners": 2, "alerts": 3, "sent": 2, "failed": 0, "skipped": 0, "already_sent": 0}

    by_rcpt = {rcpts[0]: (sender, msg) for sender, rcpts, msg in inbox.messages}
    assert sorted(by_rcpt) == ["sales-ops@example.com", "wang.fang@example.com"]
    sender, wang = by_rcpt["wang.fang@example.com"]
    assert sender == "tierflow@example.com"
    assert wang["Subject"] == "tierflow: 2 account alerts for 王芳 on 2026-03-31"
    assert wang["To"].addresses[0].display_name == "王芳"
    text = wang.get_content()
    # the high-severity credit alert is listed before the medium churn alert
    assert text.index("1. [high] credit: Acme Ltd (C02), high tier") < text.index(
        "2. [medium] churn_risk: 上海华东贸易有限公司 (C01), high tier"
    )
    assert "No order for 96 days, 3.2 x the usual gap of 30 days." in text
    assert "value 96, threshold 90" in text
    assert "Old Co" not in text and "北京星河科技" not in text

    _, ops = by_rcpt["sales-ops@example.com"]
    assert ops["Subject"] == "tierflow: 1 account alert for Li Lei on 2026-03-31"
    assert ops["To"].addresses[0].display_name == ""  # the fallback address is not Li Lei's
    assert "1. [high] revenue_drop: 北京星河科技 (C03), medium tier" in ops.get_content()

    with psycopg.connect(alerts_db) as conn:
        recorded = conn.execute(
            "select owner, recipient, alert_count, status"
            " from tierflow_meta.alert_notifications order by owner"
        ).fetchall()
    assert recorded == [
        ("Li Lei", "sales-ops@example.com", 1, "sent"),
        ("王芳", "wang.fang@example.com", 2, "sent"),
    ]

    # a retry of the same run sends nothing twice
    again = send_alert_emails(alerts_db, "bi", AS_OF, "run-1", NOTIFY, smtp)
    assert (again["sent"], again["already_sent"], len(inbox.messages)) == (0, 2, 2)


def test_owner_without_address_and_no_fallback_is_recorded_not_sent(
    alerts_db: str, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    smtp = SmtpSettings(host="127.0.0.1", port=port, sender="tierflow@example.com")
    summary = send_alert_emails(
        alerts_db, "bi", AS_OF, "run-2", NotificationsConfig(recipients=NOTIFY.recipients), smtp
    )
    assert (summary["sent"], summary["skipped"]) == (1, 1)
    assert [rcpts for _, rcpts, _ in inbox.messages] == [["wang.fang@example.com"]]
    with psycopg.connect(alerts_db) as conn:
        (error,) = conn.execute(
            "select error from tierflow_meta.alert_notifications where status = 'skipped'"
        ).fetchone()
    assert "no address for 'Li Lei'" in error


def test_unreachable_server_is_recorded_as_failed(alerts_db: str) -> None:
    smtp = SmtpSettings(host="127.0.0.1", port=_free_port(), sender="tierflow@example.com")  # nobody listens
    summary = send_alert_emails(alerts_db, "bi", AS_OF, "run-3", NOTIFY, smtp)
    assert (summary["sent"], summary["failed"]) == (0, 2)
    with psycopg.connect(alerts_db) as conn:
        statuses = conn.execute("select distinct status from tierflow_meta.alert_notifications").fetchall()
    assert statuses == [("failed",)]


def test_without_smtp_settings_nothing_is_sent(
    alerts_db: str, smtp_server: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, _ = smtp_server
    for var in ("TIERFLOW_SMTP_HOST", "TIERFLOW_SMTP_PORT", "TIERFLOW_SMTP_FROM"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings()
    assert settings.smtp is None
    assert send_alert_emails(alerts_db, "bi", AS_OF, "run-4", NOTIFY, settings.smtp) == {
        "smtp": "not configured",
        "sent": 0,
    }
    assert inbox.messages == []
    with psycopg.connect(alerts_db) as conn:  # not even the meta table is touched
        assert conn.execute("select to_regclass('tierflow_meta.alert_notifications')").fetchone() == (None,)


def test_smtp_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from tierflow.settings import SettingsError

    monkeypatch.setenv("TIERFLOW_SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("TIERFLOW_SMTP_STARTTLS", "true")
    monkeypatch.setenv("TIERFLOW_SMTP_USER", "tierflow")
    monkeypatch.setenv("TIERFLOW_SMTP_PASSWORD", "s3cret")
    monkeypatch.delenv("TIERFLOW_SMTP_PORT", raising=False)
    monkeypatch.delenv("TIERFLOW_SMTP_FROM", raising=False)
    smtp = load_settings().smtp
    assert smtp == SmtpSettings(
        "mail.example.com", 587, "tierflow@mail.example.com", True, "tierflow", "s3cret"
    )
    assert "s3cret" not in repr(smtp)
    monkeypatch.setenv("TIERFLOW_SMTP_PORT", "smtp")
    with pytest.raises(SettingsError, match="TIERFLOW_SMTP_PORT='smtp'"):
        load_settings()
    monkeypatch.setenv("TIERFLOW_SMTP_PORT", "2525")
    monkeypatch.setenv("TIERFLOW_SMTP_STARTTLS", "maybe")
    with pytest.raises(SettingsError, match="TIERFLOW_SMTP_STARTTLS"):
        load_settings()
