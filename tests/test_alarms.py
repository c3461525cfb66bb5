"""The queue alarm: organisers are emailed once per stall, through the outbox (issue 14, point 7).

Time is moved by writing the rows' timestamps in the database, never by sleeping.
"""

import logging
import threading
from datetime import timedelta

import pytest
from conftest import add_organiser, sign, smtp_backed_app
from sqlalchemy import select, update

from app import alarms, states
from app.delivery import ORGANISER_KIND, deliver_due
from app.extensions import db
from app.models import Alarm, Delivery, utcnow


def letters():
    return db.session.scalars(select(Delivery).where(Delivery.kind == "letter").order_by(Delivery.id)).all()


def organiser_mail():
    return db.session.scalars(select(Delivery).where(Delivery.kind == ORGANISER_KIND).order_by(Delivery.id)).all()


def age_letters(minutes, *conditions):
    """Make the letters (matching ``conditions``) look queued ``minutes`` ago."""
    db.session.execute(update(Delivery).where(Delivery.kind == "letter", *conditions)
                       .values(created_at=utcnow() - timedelta(minutes=minutes)))
    db.session.commit()


def check_alarms(app):
    result = app.test_cli_runner().invoke(args=["deliveries", "check-alarms"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_the_queue_alarm_emails_once_per_stall_and_again_for_the_next(make_app, smtp_server):
    app = smtp_backed_app(make_app, smtp_server, QUEUE_ALERT_MINUTES=60)
    add_organiser(app)
    sign(app.test_client())
    with app.app_context():
        age_letters(59)
    assert check_alarms(app).splitlines() == ["no alarm raised"]  # 59 minutes: not yet

    with app.app_context():
        age_letters(61)  # nobody delivered them for an hour: a stall
    assert check_alarms(app).splitlines() == ["alarm raised: queue (organisers emailed)", "raised: queue"]
    assert check_alarms(app).splitlines() == ["raised: queue"]  # still stuck: no second email
    assert check_alarms(app).splitlines() == ["raised: queue"]
    with app.app_context():
        [alert] = organiser_mail()
        assert "61 minutes" in alert.subject
        assert "anna" not in (alert.subject + alert.body).lower()

        deliver_due(app)  # the worker is back: the letters and the alert go out
        assert {letter.status for letter in letters()} == {"sent"}
    [message] = [m for m in smtp_server.inbox.messages if "organiser@" in str(m["To"])]
    assert "61 minutes" in message["Subject"]
    assert "clamor deliveries" in message.get_content()
    assert check_alarms(app).splitlines() == ["no alarm raised"]  # cleared

    sign(app.test_client(), email="bob@example.org", name="Bob")
    with app.app_context():
        age_letters(90, Delivery.status == "pending")
    assert check_alarms(app).splitlines()[0] == "alarm raised: queue (organisers emailed)"
    with app.app_context():
        assert len(organiser_mail()) == 2
        assert "90 minutes" in organiser_mail()[1].subject


@pytest.mark.slow
def test_a_letter_waiting_for_the_hourly_cap_is_paced_not_stuck(app):
    add_organiser(app)
    sign(app.test_client())
    with app.app_context():
        age_letters(120)
        db.session.execute(update(Delivery).values(
            note="waiting: press@akorda.kz had 60 letters in the last hour (TARGET_HOURLY_CAP)",
            next_attempt_at=utcnow() + timedelta(minutes=30)))
        db.session.commit()
        assert alarms.check(app) == []
        # Its turn came 61 minutes ago and it still has not gone: stuck.
        db.session.execute(update(Delivery).values(next_attempt_at=utcnow() - timedelta(minutes=61)))
        db.session.commit()
        assert alarms.check(app) == ["queue"]


def test_no_queue_alarm_while_delivery_is_paused(app):
    sign(app.test_client())
    assert app.test_cli_runner().invoke(args=["deliveries", "pause"]).exit_code == 0
    with app.app_context():
        age_letters(600)
        assert alarms.check(app) == []


@pytest.mark.slow
def test_a_backend_that_failed_every_letter_for_15_minutes_raises_its_alarm_once(make_app, scripted_smtp, caplog):
    # The first letter is accepted, the four others are greylisted.
    controller, inbox = scripted_smtp(data_replies=[None] + ["451 4.7.1 greylisted, anna@example.org"] * 4)
    app = smtp_backed_app(make_app, controller, DELIVERY_RETRY_BASE=3600)
    add_organiser(app)
    sign(app.test_client())
    with app.app_context():
        deliver_due(app)
        assert [letter.status for letter in letters()] == ["sent", "pending", "pending", "pending", "pending"]
        assert alarms.check(app) == []  # one letter went out in the last 15 minutes
        db.session.execute(update(Delivery).where(Delivery.status == "sent").values(
            sent_at=utcnow() - timedelta(minutes=16), updated_at=utcnow() - timedelta(minutes=16)))
        db.session.commit()
        with caplog.at_level(logging.ERROR, logger="app.alarms"):
            assert alarms.check(app) == ["backend:smtp"]
        assert alarms.check(app) == []
        [alert] = organiser_mail()
        assert "smtp" in alert.subject and "15 minutes" in alert.subject
        assert "451 4.7.1 greylisted" in alert.body
        assert "anna" not in alert.body.lower()
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name == "app.alarms"]
    assert "backend:smtp" in line and "anna" not in line.lower()

    with app.app_context():
        # Fifteen quiet minutes later nothing was tried: no longer failing every letter.
        db.session.execute(update(Delivery).values(updated_at=utcnow() - timedelta(minutes=16)))
        db.session.commit()
        assert alarms.check(app) == []
        assert db.session.get(Alarm, "backend:smtp").cleared_at is not None


def test_every_transition_moves_updated_at_core_updates_too(app):
    sign(app.test_client())
    long_ago = utcnow() - timedelta(days=1)
    with app.app_context():
        db.session.execute(update(Delivery).values(updated_at=long_ago))
        db.session.commit()
        claimed = states.claim(2, timedelta(minutes=5), utcnow())  # one UPDATE … RETURNING
        db.session.commit()
        moved = {d.id for d in letters() if d.updated_at > long_ago}
        assert moved == set(claimed) and len(moved) == 2
        first = db.session.get(Delivery, claimed[0])
        states.failed(first, "550 no such mailbox")  # an ORM change
        db.session.commit()
        db.session.execute(update(Delivery).where(Delivery.id == first.id).values(updated_at=long_ago))
        db.session.commit()
        assert states.retry(Delivery.id == first.id) == 1  # a Core UPDATE that does not name the column
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Delivery, first.id).updated_at > long_ago


@pytest.mark.slow
@pytest.mark.postgres
def test_of_two_workers_raising_together_on_postgresql_one_emails(postgres_cluster, make_app):
    app = make_app(SQLALCHEMY_DATABASE_URI=postgres_cluster())
    now = utcnow()
    results = {}

    def second_worker():
        with app.app_context():
            results["second"] = alarms.raise_alarm(alarms.QUEUE, now)
            db.session.commit()

    with app.app_context():
        results["first"] = alarms.raise_alarm(alarms.QUEUE, now)  # holds the row until it commits
        other = threading.Thread(target=second_worker)
        other.start()
        other.join(0.5)  # the second waits for this transaction's lock
        db.session.commit()
        other.join()
    assert results == {"first": True, "second": False}


@pytest.mark.slow
def test_the_delivery_worker_checks_the_alarms(make_app):
    import time

    from app.delivery import DeliveryWorker

    app = make_app(DELIVERY_POLL_SECONDS=0.05)
    add_organiser(app)
    sign(app.test_client())
    with app.app_context():
        # Failed for two hours, each retry further away: no worker will claim them now.
        db.session.execute(update(Delivery).where(Delivery.kind == "letter").values(
            created_at=utcnow() - timedelta(hours=2), next_attempt_at=utcnow() + timedelta(hours=1),
            last_error="SMTP answered 451 try later"))
        db.session.commit()
    worker = DeliveryWorker(app)
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    try:
        with app.app_context():
            for _ in range(200):  # until the worker's first loop has run, 10 seconds at most
                if db.session.get(Alarm, alarms.QUEUE) is not None:
                    break
                db.session.remove()
                time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(10)
    with app.app_context():
        alarm = db.session.get(Alarm, alarms.QUEUE)
        assert alarm.raised_at is not None and alarm.cleared_at is None
        [alert] = organiser_mail()
        assert alert.status == "sent"  # and the worker sent it, by the outbox
