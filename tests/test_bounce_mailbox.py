"""`clamor bounces fetch` against a real IMAP server (a private Dovecot on loopback, TLS verified against a
test CA): bounces and notes recorded, each message moved once, the unmatched kept, the password never shown."""

import logging
import threading
import time

import pytest
from conftest import sign, unused_port
from dovecot import PASSWORD, start_dovecot
from test_bounces import BOUNCES, UNRELATED, dsn, out_of_office, statuses

from app import verp
from app.bounce_mailbox import fetch_when_due, login_check
from app.delivery import DeliveryWorker

pytestmark = pytest.mark.slow


@pytest.fixture
def dovecot(tmp_path, monkeypatch):
    server = start_dovecot(tmp_path / "dovecot")
    # ssl.create_default_context() reads it: the client verifies the server against the test CA, for real.
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca))
    yield server
    server.stop()


@pytest.fixture
def mailbox_app(make_app, dovecot):
    """An app with five letters sent (outbox_files, VERP) and BOUNCE_IMAP_URL on the test Dovecot."""
    app = make_app(BOUNCE_ADDRESS=BOUNCES, BOUNCE_IMAP_URL=dovecot.url())
    sign(app.test_client(), email="anna@example.org", name="Anna Example")
    from app.delivery import deliver_due
    from app.models import Delivery

    with app.app_context():
        assert deliver_due() == 5
        letters = [(d.id, verp.return_path(d.id, BOUNCES), d.target_key) for d in Delivery.query.order_by(Delivery.id)]
    return app, letters


def test_fetch_records_bounces_and_notes_and_keeps_the_rest(mailbox_app, dovecot):
    app, letters = mailbox_app
    (first, first_path, first_target), (second, second_path, second_target) = letters[0], letters[1]
    third, third_path, third_target = letters[2]
    dovecot.append(dsn(first_path, first_target), dsn(second_path, second_target),
                   out_of_office(third_path, third_target), UNRELATED)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["bounces", "fetch"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2 bounced, 1 noted, 0 ignored (not sent), 1 kept in Clamor-unmatched"
    now = statuses(app)
    assert [now[i][0] for i in (first, second, third)] == ["bounced", "bounced", "sent"]
    assert now[third][1] == "auto-reply: Out of office: Free Erzhan Elshibayev"
    assert sorted(status for status, _ in now.values()) == ["bounced", "bounced", "sent", "sent", "sent"]
    assert (dovecot.count("INBOX"), dovecot.count("Clamor-handled"), dovecot.count("Clamor-unmatched")) == (0, 3, 1)

    again = runner.invoke(args=["bounces", "fetch"])
    assert again.exit_code == 0, again.output
    assert again.output.strip() == "0 bounced, 0 noted, 0 ignored (not sent), 0 kept in Clamor-unmatched"
    assert statuses(app) == now
    assert (dovecot.count("Clamor-handled"), dovecot.count("Clamor-unmatched")) == (3, 1)


def test_a_wrong_password_is_one_line_without_the_password(make_app, dovecot, caplog):
    wrong = "Wr0ng-s3cret%2F"
    app = make_app(BOUNCE_IMAP_URL=dovecot.url(password=wrong))
    dovecot.append(UNRELATED)
    with caplog.at_level(logging.DEBUG):
        result = app.test_cli_runner().invoke(args=["bounces", "fetch"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: the bounce mailbox 127.0.0.1:")
    assert "refused the login of bounces" in lines[0]
    for secret in (wrong, "Wr0ng-s3cret", PASSWORD):
        assert secret not in result.output and secret not in caplog.text


def test_login_check_says_whether_the_login_works(dovecot):
    # The wrong password last: Dovecot delays every login from an address that just failed by seconds.
    wrong = "Wr0ng-s3cret%2F"
    assert login_check(dovecot.url()) is None
    assert "has no folder 'Elsewhere'" in login_check(dovecot.url(folder="Elsewhere"))
    reason = login_check(dovecot.url(password=wrong))
    assert reason.startswith("the bounce mailbox 127.0.0.1:") and "refused the login of bounces" in reason
    assert "\n" not in reason and wrong not in reason and "Wr0ng-s3cret" not in reason


def test_imap_on_this_host_logs_in_after_starttls(dovecot):
    # The server refuses a login before TLS (ssl = required): this passes only if STARTTLS happened.
    assert login_check(dovecot.url(scheme="imap")) is None


def test_the_certificate_is_verified(dovecot, monkeypatch):
    # Without the test CA the server's certificate is not trusted: no login, and the reason says so.
    monkeypatch.delenv("SSL_CERT_FILE")
    reason = login_check(dovecot.url())
    assert reason is not None and "CERTIFICATE_VERIFY_FAILED" in reason
    assert PASSWORD not in reason


def test_a_failing_fetch_logs_one_line_and_returns_the_next_time(make_app, caplog):
    app = make_app(BOUNCE_IMAP_URL=f"imaps://bounces:{PASSWORD}@127.0.0.1:{unused_port()}/INBOX",
                   BOUNCE_POLL_SECONDS=300)
    before = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="app.bounce_mailbox"):
        due = fetch_when_due(app, 0.0)
    assert due >= before + 300
    assert len(caplog.records) == 1 and "cannot be reached" in caplog.records[0].getMessage()
    assert PASSWORD not in caplog.text
    # Not yet due: nothing is tried, nothing logged.
    assert fetch_when_due(app, due) == due and len(caplog.records) == 1


def test_clamor_deliver_fetches_the_bounce_mailbox(mailbox_app, dovecot):
    app, letters = mailbox_app
    delivery_id, return_path, target = letters[4]
    dovecot.append(dsn(return_path, target))
    worker = DeliveryWorker(app)
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if statuses(app)[delivery_id][0] == "bounced":
                break
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert statuses(app)[delivery_id][0] == "bounced"
    assert (dovecot.count("INBOX"), dovecot.count("Clamor-handled")) == (0, 1)


def test_clamor_doctor_tries_the_bounce_mailbox_login(dovecot, instance_path):
    from test_doctor import doctor, line

    _, lines = doctor(instance_path, BOUNCE_IMAP_URL=dovecot.url(), DOCTOR_NAMESERVERS=["127.0.0.1:9"])
    assert line(lines, "bounce mailbox") == "ok: bounce mailbox: logged in, its folder opens"
    _, lines = doctor(instance_path, BOUNCE_IMAP_URL=dovecot.url(password="Wr0ng"), DOCTOR_NAMESERVERS=["127.0.0.1:9"])
    assert line(lines, "bounce mailbox").startswith("FIX: bounce mailbox: the bounce mailbox 127.0.0.1:")
    assert "Wr0ng" not in "\n".join(lines)
