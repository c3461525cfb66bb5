"""Operating delivery: the hourly cap, test mode, pause/resume and `clamor deliveries`."""

from datetime import timedelta

import pytest
from conftest import SLUG, add_organiser, login, sign

from app.delivery import deliver_due
from app.extensions import db
from app.figures import dashboard_figures
from app.models import Delivery, Signature, utcnow


def smtp(smtp_server, **overrides):
    return dict(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port, **overrides)


@pytest.mark.slow
def test_letters_past_the_hourly_cap_wait_without_using_an_attempt(make_app, smtp_server):
    app = make_app(**smtp(smtp_server, TARGET_HOURLY_CAP=2))
    client = app.test_client()
    for n in range(3):
        sign(client, email=f"supporter{n}@example.org")
    with app.app_context():
        assert deliver_due() == 15
        for target in ("press@akorda.kz", "press@mfa.kz"):
            rows = Delivery.query.filter_by(target_key=target).order_by(Delivery.id).all()
            assert [d.status for d in rows] == ["sent", "sent", "pending"]
            waiting = rows[2]
            assert waiting.attempts == 0
            # Waiting is not an error: the reason is in note, last_error stays empty.
            assert waiting.note == f"waiting: {target} had 2 letters in the last hour (TARGET_HOURLY_CAP)"
            assert waiting.last_error == ""
            # It waits until the first of the hour's letters is an hour old.
            assert waiting.next_attempt_at >= rows[0].sent_at + timedelta(hours=1)
        assert deliver_due() == 0
        # An hour later it goes.
        for delivery in Delivery.query:
            if delivery.sent_at:
                delivery.sent_at -= timedelta(hours=1, minutes=1)
            else:
                delivery.next_attempt_at = utcnow()
        db.session.commit()
        assert deliver_due() == 5
        assert {d.status for d in Delivery.query} == {"sent"}
    assert len(smtp_server.inbox.envelopes) == 15


@pytest.mark.slow
def test_a_cap_wait_is_not_an_error_for_clamor_deliveries_nor_the_dashboard(make_app, smtp_server):
    app = make_app(**smtp(smtp_server, TARGET_HOURLY_CAP=1))
    client = app.test_client()
    for n in range(2):
        sign(client, email=f"supporter{n}@example.org")
    with app.app_context():
        deliver_due()
        waiting = Delivery.query.filter_by(status="pending").all()
        assert waiting and all("TARGET_HOURLY_CAP" in d.note and d.last_error == "" for d in waiting)
        targets = dashboard_figures(app.extensions["clamor"].campaigns[SLUG])["targets"]
        assert [t["queued"] for t in targets] == [1] * len(targets)
        assert [t["last_error"] for t in targets] == [""] * len(targets)
    output = app.test_cli_runner().invoke(args=["deliveries"]).output
    assert "oldest pending" in output
    assert "recent errors" not in output and "TARGET_HOURLY_CAP" not in output
    add_organiser(app)
    login(client)
    page = client.get(f"/admin/{SLUG}/").get_data(as_text=True)
    assert "press@akorda.kz" in page and "TARGET_HOURLY_CAP" not in page


def test_test_mode_sends_every_letter_to_the_organiser_marked(make_app, smtp_server):
    app = make_app(**smtp(smtp_server, TEST_MODE_RECIPIENT="organiser@union.test"))
    sign(app.test_client())
    with app.app_context():
        deliver_due()
    assert [e.rcpt_tos for e in smtp_server.inbox.envelopes] == [["organiser@union.test"]] * 5
    assert {m["Subject"] for m in smtp_server.inbox.messages} == {"[TEST] Libérez Erzhan Elshibayev"}
    assert {m["To"].addresses[0].addr_spec for m in smtp_server.inbox.messages} == {"organiser@union.test"}


def test_pause_keeps_signatures_and_sends_nothing_until_resume(make_app, smtp_server):
    app = make_app(**smtp(smtp_server))
    runner = app.test_cli_runner()
    assert "paused" in runner.invoke(args=["deliveries", "pause"]).output
    assert sign(app.test_client()).status_code == 303
    with app.app_context():
        assert deliver_due() == 0
        assert Signature.query.count() == 1
        assert {d.status for d in Delivery.query} == {"pending"}
    assert runner.invoke(args=["deliver", "--once"]).output.startswith("delivery is paused")
    assert "PAUSED" in runner.invoke(args=["deliveries"]).output
    assert smtp_server.inbox.envelopes == []

    assert "resumed" in runner.invoke(args=["deliveries", "resume"]).output
    with app.app_context():
        assert deliver_due() == 5
    assert len(smtp_server.inbox.envelopes) == 5


@pytest.mark.slow
def test_clamor_deliveries_shows_counts_oldest_pending_and_errors(make_app, smtp_server):
    app = make_app(**smtp(smtp_server))
    sign(app.test_client())
    with app.app_context():
        deliveries = Delivery.query.order_by(Delivery.id).all()
        deliveries[0].status, deliveries[0].last_error = "failed", "SMTP answered 550 no such mailbox"
        deliveries[1].last_error = "SMTP answered 451 greylisted"
        deliveries[1].attempts = 1
        db.session.commit()
    output = app.test_cli_runner().invoke(args=["deliveries"]).output
    assert "pending: 4  sending: 0  sent: 0  delivered: 0  bounced: 0  failed: 1" in output
    assert "press@prokuror.kz" in output and "press@akorda.kz" in output
    assert "oldest pending: #2 to press@akorda.kz" in output
    assert "#1 failed press@prokuror.kz (attempt 0): SMTP answered 550 no such mailbox" in output
    assert "#2 pending press@akorda.kz (attempt 1): SMTP answered 451 greylisted" in output


def test_clamor_deliveries_and_the_dashboard_show_the_same_figures(make_app, smtp_server):
    # One query per figure (app/figures.py): the CLI's row for a target and the
    # dashboard's say the same, its newest error included.
    app = make_app(**smtp(smtp_server))
    sign(app.test_client())
    with app.app_context():
        deliveries = Delivery.query.order_by(Delivery.id).all()
        deliveries[0].status, deliveries[0].last_error = "failed", "SMTP answered 550 no such mailbox"
        deliveries[1].status = "sending"
        db.session.commit()
        failed_key = deliveries[0].target_key
        figures = dashboard_figures(app.extensions["clamor"].campaigns[SLUG])
        rows = {row["target"].key: row for row in figures["targets"]}
    output = app.test_cli_runner().invoke(args=["deliveries"]).output
    assert rows[failed_key]["failed"] == 1
    assert rows[failed_key]["last_error"] == "SMTP answered 550 no such mailbox"
    assert f"#{deliveries[0].id} failed {failed_key} (attempt 0): SMTP answered 550 no such mailbox" in output
    assert len(rows) == 5
    for key, row in rows.items():
        line = next(line for line in output.splitlines() if line.startswith(key + " "))
        pending, sending, sent, delivered, bounced, failed, held, cancelled, in_digest = map(int, line.split()[1:])
        assert (pending + sending + in_digest, sent, delivered, bounced, failed, held, cancelled) == (
            row["queued"], row["sent"], row["delivered"], row["bounced"], row["failed"], row["held"],
            row["cancelled"]), key


@pytest.mark.slow
def test_clamor_deliveries_retry(make_app, smtp_server):
    app = make_app(**smtp(smtp_server))
    sign(app.test_client())
    with app.app_context():
        for delivery in Delivery.query:
            delivery.next_attempt_at = utcnow() + timedelta(hours=1)
            delivery.attempts = 3
        Delivery.query.filter(Delivery.id <= 2).update({"status": "failed"})
        db.session.commit()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["deliveries", "retry"]).output == "3 deliveries due now\n"
    assert runner.invoke(args=["deliveries", "retry", "--id", "1"]).output == "1 deliveries due now\n"
    with app.app_context():
        assert deliver_due() == 4
        assert db.session.get(Delivery, 1).attempts == 1  # a fresh round
        assert db.session.get(Delivery, 2).status == "failed"
    assert runner.invoke(args=["deliveries", "retry", "--failed"]).output == "1 deliveries due now\n"
    result = runner.invoke(args=["deliveries", "retry", "--id", "1"])
    assert result.exit_code != 0 and "no pending or failed delivery #1" in result.output
    with app.app_context():
        assert deliver_due() == 1
        assert {d.status for d in Delivery.query} == {"sent"}
    assert len(smtp_server.inbox.envelopes) == 5
