"""Account-alert e-mails (tierflow.alerts) against a real SMTP server on 127.0.0.1.

Why: an account manager must get exactly one e-mail per run listing their own alerts, with
the customers' names intact (Chinese included); the fallback address collects the rest; and a
checkout without SMTP settings must send nothing and not fail. With a login, the password goes
over TLS (STARTTLS by default, implicit TLS on port 465, the certificate verified) unless plaintext
is explicitly allowed, and then a warning says so.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import ipaddress
import logging
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
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
    assert summary == {"owners": 2, "alerts": 3, "sent": 2, "updates": 0, "failed": 0, "skipped": 0,
                       "already_sent": 0}

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
    # nor does a rerun of the date (another run id) with the same alerts
    rerun = send_alert_emails(alerts_db, "bi", AS_OF, "run-2", NOTIFY, smtp)
    assert (rerun["sent"], rerun["already_sent"], len(inbox.messages)) == (0, 2, 2)

    # a rerun after a correction changed Li Lei's alert: only Li Lei hears again, told it is an update
    with psycopg.connect(alerts_db) as conn:
        conn.execute("update bi.account_alerts set reason = reason || ' (corrected)' where owner = 'Li Lei'")
    corrected = send_alert_emails(alerts_db, "bi", AS_OF, "run-3", NOTIFY, smtp)
    assert (corrected["sent"], corrected["updates"], corrected["already_sent"]) == (1, 1, 1)
    assert len(inbox.messages) == 3
    _, _, update = inbox.messages[-1]
    assert update["Subject"] == "tierflow: 1 account alert for Li Lei on 2026-03-31 (updated)"
    assert "This replaces the list you received earlier for the same date" in update.get_content()
    assert "(corrected)" in update.get_content()


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


# -- TLS: a login never crosses the network in clear unless explicitly allowed ----------------
# (aiosmtpd warns about its servers that take a login without STARTTLS: the implicit-TLS one,
# where the whole connection is TLS, and the plaintext ones these tests need.)
USER, PASSWORD = "tierflow", "s3cret-pw"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and its key (PEM files), made here."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tierflow test SMTP server")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("smtp-tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class GuardedInbox(Inbox):
    """Keeps every message with whether it came over TLS and who logged in; counts logins."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: list[tuple[bool, bytes | None]] = []
        self.login_attempts = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        login = session.auth_data.login if session.authenticated else None
        self.deliveries.append((over_tls, login))
        return await super().handle_DATA(server, session, envelope)

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.login_attempts += 1
        ok = (auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode())
        return AuthResult(success=ok, auth_data=auth_data)


@contextlib.contextmanager
def _guarded_server(
    mode: str, certificate: tuple[Path, Path] | None = None
) -> Iterator[tuple[GuardedInbox, int]]:
    """An SMTP server that requires a login: ``starttls`` (and refuses anything before it),
    ``ssl`` (TLS from the first byte) or ``plain`` (accepts a login in clear)."""
    inbox, port = GuardedInbox(), _free_port()
    kwargs: dict = {"authenticator": inbox.authenticate, "auth_required": True}
    if mode != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*certificate)
    if mode == "starttls":
        kwargs |= {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
    elif mode == "ssl":
        kwargs |= {"ssl_context": context, "auth_require_tls": False}
    else:
        kwargs |= {"auth_require_tls": False}
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _smtp_env(monkeypatch: pytest.MonkeyPatch, port: int, **extra: str) -> None:
    for var in ("TIERFLOW_SMTP_SSL", "TIERFLOW_SMTP_STARTTLS", "TIERFLOW_SMTP_ALLOW_PLAINTEXT",
                "TIERFLOW_SMTP_FROM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TIERFLOW_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("TIERFLOW_SMTP_PORT", str(port))
    monkeypatch.setenv("TIERFLOW_SMTP_USER", USER)
    monkeypatch.setenv("TIERFLOW_SMTP_PASSWORD", PASSWORD)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def _statuses(url: str, run_id: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select status, error from tierflow_meta.alert_notifications where run_id = %s order by owner",
            (run_id,),
        ).fetchall()


def test_with_a_user_starttls_is_the_default(
    alerts_db: str, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with _guarded_server("starttls", certificate) as (inbox, port):
        _smtp_env(monkeypatch, port)
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # OpenSSL: trust the throwaway CA
        smtp = load_settings().smtp
        assert (smtp.starttls, smtp.ssl, smtp.allow_plaintext) == (True, False, False)
        summary = send_alert_emails(alerts_db, "bi", AS_OF, "tls-1", NOTIFY, smtp)
    assert (summary["sent"], summary["failed"]) == (2, 0)
    assert inbox.deliveries == [(True, USER.encode())] * 2


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")  # on purpose
def test_implicit_tls_on_port_465_or_when_asked(
    alerts_db: str, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _smtp_env(monkeypatch, 465)
    smtp = load_settings().smtp
    assert (smtp.port, smtp.ssl, smtp.starttls) == (465, True, False)
    with _guarded_server("ssl", certificate) as (inbox, port):
        _smtp_env(monkeypatch, port, TIERFLOW_SMTP_SSL="true")
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        smtp = load_settings().smtp
        assert (smtp.ssl, smtp.starttls) == (True, False)
        summary = send_alert_emails(alerts_db, "bi", AS_OF, "tls-2", NOTIFY, smtp)
    assert (summary["sent"], summary["failed"]) == (2, 0)
    assert inbox.deliveries == [(True, USER.encode())] * 2


def test_a_certificate_nobody_vouches_for_is_refused(
    alerts_db: str, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with _guarded_server("starttls", certificate) as (inbox, port):
        _smtp_env(monkeypatch, port)
        other_ca = tmp_path / "no-ca.pem"
        other_ca.write_text("")
        monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))  # the throwaway certificate is not trusted
        summary = send_alert_emails(alerts_db, "bi", AS_OF, "tls-3", NOTIFY, load_settings().smtp)
    assert (summary["sent"], summary["failed"]) == (0, 2)
    assert inbox.messages == [] and inbox.login_attempts == 0
    assert all(status == "failed" and "CERTIFICATE_VERIFY_FAILED" in error
               for status, error in _statuses(alerts_db, "tls-3"))


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")  # on purpose
def test_a_server_without_starttls_gets_no_login(alerts_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # this server would take the password in clear: the default settings never offer it
    with _guarded_server("plain") as (inbox, port):
        _smtp_env(monkeypatch, port)
        summary = send_alert_emails(alerts_db, "bi", AS_OF, "tls-4", NOTIFY, load_settings().smtp)
    assert (summary["sent"], summary["failed"]) == (0, 2)
    assert inbox.messages == [] and inbox.login_attempts == 0
    assert all(status == "failed" and "STARTTLS" in error for status, error in _statuses(alerts_db, "tls-4"))


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")  # on purpose
def test_plaintext_login_needs_an_explicit_yes_and_is_warned_about(
    alerts_db: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tierflow.settings import SettingsError

    with _guarded_server("plain") as (inbox, port):
        _smtp_env(monkeypatch, port, TIERFLOW_SMTP_STARTTLS="false")
        with pytest.raises(SettingsError, match="TIERFLOW_SMTP_ALLOW_PLAINTEXT=true"):
            load_settings()
        with pytest.raises(SettingsError, match="in clear"):  # nor when built in code
            SmtpSettings(host="127.0.0.1", port=port, sender="t@example.com", user=USER, password=PASSWORD)

        monkeypatch.setenv("TIERFLOW_SMTP_ALLOW_PLAINTEXT", "true")
        smtp = load_settings().smtp
        assert (smtp.starttls, smtp.ssl, smtp.allow_plaintext) == (False, False, True)
        with caplog.at_level(logging.WARNING, logger="tierflow.alerts"):
            summary = send_alert_emails(alerts_db, "bi", AS_OF, "plain-1", NOTIFY, smtp)
    assert summary["sent"] == 2
    assert inbox.deliveries == [(False, USER.encode())] * 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("WITHOUT encryption" in w and f"127.0.0.1:{port}" in w for w in warnings), warnings


def test_smtp_tls_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from tierflow.settings import SettingsError

    for var in ("TIERFLOW_SMTP_PORT", "TIERFLOW_SMTP_USER", "TIERFLOW_SMTP_PASSWORD", "TIERFLOW_SMTP_SSL",
                "TIERFLOW_SMTP_STARTTLS", "TIERFLOW_SMTP_ALLOW_PLAINTEXT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TIERFLOW_SMTP_HOST", "relay.internal")
    # no login: an internal relay on port 25, as before
    assert load_settings().smtp == SmtpSettings("relay.internal", 25, "tierflow@relay.internal")
    monkeypatch.setenv("TIERFLOW_SMTP_USER", "u")
    smtp = load_settings().smtp
    assert (smtp.port, smtp.starttls, smtp.ssl) == (587, True, False)
    monkeypatch.setenv("TIERFLOW_SMTP_SSL", "true")
    smtp = load_settings().smtp
    assert (smtp.port, smtp.starttls, smtp.ssl) == (465, False, True)
    monkeypatch.setenv("TIERFLOW_SMTP_STARTTLS", "true")
    with pytest.raises(SettingsError, match="choose one"):
        load_settings()
    monkeypatch.setenv("TIERFLOW_SMTP_ALLOW_PLAINTEXT", "perhaps")
    monkeypatch.delenv("TIERFLOW_SMTP_STARTTLS")
    with pytest.raises(SettingsError, match="TIERFLOW_SMTP_ALLOW_PLAINTEXT='perhaps'"):
        load_settings()
