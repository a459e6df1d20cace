"""Account-alert e-mails: after publish, each owner gets one e-mail listing their alerts.

Reads ``<publish schema>.account_alerts`` for the as-of date (built by dbt, published with the
other marts), groups the alerts by ``owner`` (the account manager; 'unassigned' when none),
and sends one message per owner to the address in ``notifications.recipients`` (config), or
to ``notifications.fallback_recipient``. The SMTP server comes from the environment
(``TIERFLOW_SMTP_*``, read in ``tierflow.settings``); without ``TIERFLOW_SMTP_HOST`` nothing is
sent and nothing is recorded.

Every attempt is recorded in ``tierflow_meta.alert_notifications`` (sent / failed / skipped,
with the error and a digest of the alerts listed). E-mails are de-duplicated per owner and
as-of date: a retry or a rerun of a date (whatever its run id) does not e-mail an owner again
the same list of alerts; an owner whose alerts for that date changed (a rerun after a
correction) gets the new list, marked as an update. A delivery failure is recorded and
logged but does not fail the run: the tables are already published, and the CLI would
otherwise report a published night as "nothing was published".
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from collections import defaultdict
from datetime import date

import psycopg
from psycopg import sql

from tierflow.alerts.messages import Alert, compose, sort_key
from tierflow.config import NotificationsConfig
from tierflow.meta import ensure_alert_notifications_table
from tierflow.settings import META_SCHEMA, SmtpSettings

log = logging.getLogger(__name__)

UNASSIGNED = "unassigned"
ALERT_COLUMNS = (
    "alert_id",
    "customer_id",
    "customer_name",
    "value_tier",
    "alert_type",
    "severity",
    "owner",
    "reason",
    "metric_value",
    "threshold",
)

class AlertsError(RuntimeError):
    """The alerts cannot be read; the message names the table."""


_no_smtp_logged = False


def _log_no_smtp() -> None:
    global _no_smtp_logged
    if not _no_smtp_logged:
        log.info("TIERFLOW_SMTP_HOST is not set: no account-alert e-mails are sent")
        _no_smtp_logged = True


def read_alerts(conn: psycopg.Connection, publish_schema: str, as_of: date) -> dict[str, list[Alert]]:
    """The date's alerts by owner, most urgent first."""
    exists = conn.execute("select to_regclass(%s)", (f"{publish_schema}.account_alerts",)).fetchone()[0]
    if exists is None:
        raise AlertsError(f"{publish_schema}.account_alerts does not exist: was it published?")
    rows = conn.execute(
        sql.SQL("select {} from {} where as_of_date = %s").format(
            sql.SQL(", ").join(map(sql.Identifier, ALERT_COLUMNS)),
            sql.Identifier(publish_schema, "account_alerts"),
        ),
        (as_of,),
    ).fetchall()
    by_owner: dict[str, list[Alert]] = defaultdict(list)
    for r in rows:
        alert = Alert(*r)
        owner = (alert.owner or "").strip() or UNASSIGNED
        by_owner[owner].append(alert)
    return {owner: sorted(alerts, key=sort_key) for owner, alerts in sorted(by_owner.items())}


def alert_digest(alerts: list[Alert]) -> str:
    """A fingerprint of the alerts an e-mail lists (ids, severity, reason): the same list on a
    rerun gives the same digest, a changed one a different digest."""
    listed = sorted(alerts, key=lambda a: a.alert_id)
    text = "\n".join(f"{a.alert_id}|{a.severity}|{a.reason}" for a in listed)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sent_before(conn: psycopg.Connection, as_of: date) -> dict[str, set[str | None]]:
    """Per owner, the digests of the e-mails already sent for ``as_of`` by any run."""
    rows = conn.execute(
        sql.SQL(
            "select owner, alert_digest from {}.alert_notifications where as_of_date = %s and status = 'sent'"
        ).format(sql.Identifier(META_SCHEMA)),
        (as_of,),
    ).fetchall()
    sent: dict[str, set[str | None]] = defaultdict(set)
    for owner, digest in rows:
        sent[owner].add(digest)
    return sent


def _record(
    conn: psycopg.Connection,
    run_id: str,
    as_of: date,
    owner: str,
    recipient: str | None,
    count: int,
    status: str,
    error: str | None = None,
    digest: str | None = None,
) -> None:
    conn.execute(
        sql.SQL(
            "insert into {}.alert_notifications"
            " (run_id, as_of_date, owner, recipient, alert_count, alert_digest, status, error)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(sql.Identifier(META_SCHEMA)),
        (run_id, as_of, owner, recipient, count, digest, status, error),
    )


def _connect(smtp: SmtpSettings) -> smtplib.SMTP:
    """A logged-in connection. TLS verifies the server's certificate against the system's CAs
    (OpenSSL's SSL_CERT_FILE / SSL_CERT_DIR add a private CA); a server that does not offer
    STARTTLS fails the e-mail rather than getting the login in clear."""
    context = ssl.create_default_context()
    if smtp.ssl:
        server: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=30, context=context)
    else:
        server = smtplib.SMTP(smtp.host, smtp.port, timeout=30)
    try:
        if smtp.starttls:
            server.starttls(context=context)
        if smtp.user:
            if not smtp.encrypted:
                log.warning(
                    "logging in to SMTP server %s:%s as %s WITHOUT encryption "
                    "(TIERFLOW_SMTP_ALLOW_PLAINTEXT=true): the password crosses the network in clear",
                    smtp.host, smtp.port, smtp.user,
                )
            server.login(smtp.user, smtp.password or "")
    except Exception:
        server.close()
        raise
    return server


def send_alert_emails(
    url: str,
    publish_schema: str,
    as_of: date,
    run_id: str,
    notifications: NotificationsConfig,
    smtp: SmtpSettings | None,
) -> dict:
    """Send one e-mail per owner with their alerts for ``as_of``; return what happened."""
    if smtp is None:
        _log_no_smtp()
        return {"smtp": "not configured", "sent": 0}
    summary = dict.fromkeys(("owners", "alerts", "sent", "updates", "failed", "skipped", "already_sent"), 0)
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_alert_notifications_table(conn)
        by_owner = read_alerts(conn, publish_schema, as_of)
        sent_before = _sent_before(conn, as_of)
        summary["owners"], summary["alerts"] = len(by_owner), sum(map(len, by_owner.values()))
        server: smtplib.SMTP | None = None
        try:
            for owner, alerts in by_owner.items():
                digest = alert_digest(alerts)
                if digest in sent_before.get(owner, set()):
                    summary["already_sent"] += 1
                    continue
                is_update = bool(sent_before.get(owner))
                own_address = notifications.recipients.get(owner)
                recipient = own_address or notifications.fallback_recipient
                if recipient is None:
                    _record(
                        conn,
                        run_id,
                        as_of,
                        owner,
                        None,
                        len(alerts),
                        "skipped",
                        f"no address for {owner!r} in notifications.recipients and no fallback_recipient",
                    )
                    summary["skipped"] += 1
                    continue
                msg = compose(
                    smtp.sender,
                    recipient,
                    owner,
                    own_address is not None,
                    as_of,
                    run_id,
                    alerts,
                    publish_schema,
                    is_update=is_update,
                )
                try:
                    if server is None:
                        server = _connect(smtp)
                    server.send_message(msg)
                except (OSError, smtplib.SMTPException) as exc:
                    log.warning("alert e-mail to %s (%s) failed: %s", recipient, owner, exc)
                    error = str(exc)[:1000]
                    _record(conn, run_id, as_of, owner, recipient, len(alerts), "failed", error, digest)
                    summary["failed"] += 1
                    if server is not None:  # the connection may be broken: reconnect for the next one
                        server.close()
                        server = None
                    continue
                _record(conn, run_id, as_of, owner, recipient, len(alerts), "sent", digest=digest)
                summary["sent"] += 1
                summary["updates"] += is_update
        finally:
            if server is not None:
                try:
                    server.quit()
                except (OSError, smtplib.SMTPException):
                    server.close()
    log.info("account-alert e-mails for %s: %s", as_of, summary)
    return summary
