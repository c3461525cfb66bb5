"""DELIVERY_COMMIT_SECONDS: outcomes committed together, each letter still sent once and recorded once.

Real aiosmtpd servers on loopback; the crash test runs `clamor deliver` as its
own process and kills it, as tests/test_faults.py does.
"""

import collections
import functools
import logging
import re
import signal

import pytest
from conftest import SLUG, sign, smtp_backed_app
from sqlalchemy import event, text
from test_faults import queue_signatures, start_worker, stored, wait_for

from app import ConfigError, hookimpl
from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery


class CommittedWhenTold:
    """A plugin noting, at each hook call, the letter's status as another connection reads it from the database."""

    def __init__(self):
        self.sent, self.failed = {}, {}

    def _committed_status(self, delivery):
        with db.engine.connect() as connection:
            return connection.execute(text("SELECT status FROM delivery WHERE id = :id"), {"id": delivery.id}).scalar()

    @hookimpl
    def letter_sent(self, delivery, receipt):
        self.sent[delivery.id] = self._committed_status(delivery)

    @hookimpl
    def letter_failed(self, delivery, error):
        self.failed[delivery.id] = self._committed_status(delivery)


def statements_by_connection(app):
    """What each new SQLite connection of the app runs from now on: connection -> ["update" per outcome row, "commit"].

    Read by SQLite itself (its trace callback), below SQLAlchemy: the
    outcomes are written on a DBAPI connection of the writer's own.
    """
    runs, last = collections.defaultdict(list), {}

    def trace(connection, statement):
        # SQLite reports a statement again at the start of each trigger it
        # runs (the totals' triggers): one row's UPDATE, with its values, once.
        if last.get(connection) == statement:
            return
        last[connection] = statement
        if re.match(r"\s*UPDATE delivery SET .* WHERE delivery\.id = ", statement, re.S):
            runs[connection].append("update")
        elif statement.strip().upper() == "COMMIT":
            runs[connection].append("commit")

    def traced(dbapi_connection, record):
        dbapi_connection.set_trace_callback(functools.partial(trace, id(dbapi_connection)))

    with app.app_context():
        db.engine.dispose()  # every connection from now on is a new, traced one
        event.listen(db.engine, "connect", traced)
    return runs


def database_settings(database, request):
    """Settings for ``database``: the fixtures' SQLite, or a fresh PostgreSQL database."""
    if database == "postgresql":
        return {"SQLALCHEMY_DATABASE_URI": request.getfixturevalue("postgres_cluster")()}
    return {}


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.slow
@pytest.mark.parametrize("database", DATABASES)
@pytest.mark.parametrize("connections", [1, 4])
def test_grouped_commits_send_every_letter_once_and_record_it(make_app, sink, connections, database, request):
    server = sink()
    plugin = CommittedWhenTold()
    app = smtp_backed_app(make_app, server, plugins=[plugin], DELIVERY_COMMIT_SECONDS=1,
                          DELIVERY_CONNECTIONS=connections, TARGET_HOURLY_CAP=0,
                          **database_settings(database, request))
    expected = queue_signatures(app, 10)
    with app.app_context():
        assert deliver_due() == expected == 50
    statuses = stored(app)
    assert set(statuses.values()) == {"sent"}
    assert server.inbox.message_ids() == collections.Counter(set(statuses))  # each exactly once
    # Each hook ran once per letter, after the commit that recorded it.
    assert len(plugin.sent) == expected and set(plugin.sent.values()) == {"sent"}


@pytest.mark.slow
@pytest.mark.parametrize("window, commits", [(50, 1), (0, 50)])
def test_a_batch_is_written_in_one_commit_or_one_per_letter(make_app, sink, window, commits):
    # A commit window longer than the batch takes: its outcomes are committed
    # once, at its end (a batch of 50 to a local server takes well under 50 s).
    # Without one, each outcome has a commit of its own.
    server = sink()
    app = smtp_backed_app(make_app, server, DELIVERY_COMMIT_SECONDS=window, TARGET_HOURLY_CAP=0)
    expected = queue_signatures(app, 10)
    runs = statements_by_connection(app)
    with app.app_context():
        assert deliver_due() == expected
    writers = [run for run in runs.values() if "update" in run]
    assert len(writers) == 1  # one connection wrote every outcome
    assert writers[0] == (["update"] * (expected // commits) + ["commit"]) * commits
    assert set(stored(app).values()) == {"sent"}


@pytest.mark.slow
def test_a_failure_is_recorded_and_told_after_its_commit(make_app, scripted_smtp):
    controller, inbox = scripted_smtp(rcpt_replies=["550 5.1.1 no such mailbox"])
    plugin = CommittedWhenTold()
    app = smtp_backed_app(make_app, controller, plugins=[plugin], DELIVERY_COMMIT_SECONDS=1)
    sign(app.test_client())
    with app.app_context():
        assert deliver_due() == 5
        statuses = collections.Counter(d.status for d in Delivery.query)
    assert statuses == {"sent": 4, "failed": 1}
    assert set(plugin.failed.values()) == {"failed"} and len(plugin.failed) == 1
    assert set(plugin.sent.values()) == {"sent"} and len(plugin.sent) == 4


@pytest.mark.slow
@pytest.mark.parametrize("database", DATABASES)
def test_letters_forgotten_while_their_outcomes_wait_for_the_commit_are_not_recorded(
        make_app, scripted_smtp, caplog, database, request):
    """Anna's first two letters are sent, their outcomes held; her third is at DATA when she is forgotten."""
    import threading

    caplog.set_level(logging.INFO, logger="app.delivery")
    controller, inbox = scripted_smtp(data_replies=[0, 0, 2])
    plugin = CommittedWhenTold()
    app = smtp_backed_app(make_app, controller, plugins=[plugin], DELIVERY_COMMIT_SECONDS=50,
                          **database_settings(database, request))
    sign(app.test_client(), email="anna@example.org", name="Anna")
    sign(app.test_client(), email="bob@example.org", name="Bob")
    claimed = []

    def worker():
        with app.app_context():
            claimed.append(deliver_due())

    thread = threading.Thread(target=worker)
    thread.start()
    wait_for(lambda: len(inbox.envelopes) >= 2)  # the third letter now takes two seconds at DATA
    result = app.test_cli_runner().invoke(args=["forget", "anna@example.org"])
    assert result.exit_code == 0, result.output
    thread.join(timeout=30)
    assert claimed == [10]
    arrived = [envelope.original_content for envelope in inbox.envelopes]
    assert sum(b"anna@example.org" in data for data in arrived) == 3  # her other two were never sent
    assert sum(b"bob@example.org" in data for data in arrived) == 5
    with app.app_context():
        deliveries = list(Delivery.query)
        assert {d.signature.email for d in deliveries} == {"bob@example.org"}
        assert {d.status for d in deliveries} == {"sent"}
        bobs = {d.id for d in deliveries}
    # Her three held outcomes had no row to go to: logged, not recorded, not told.
    for gone in (1, 2, 3):
        assert f"delivery {gone} was deleted while it was being sent" in caplog.text
    assert set(plugin.sent) == bobs


@pytest.mark.slow
def test_a_killed_worker_sends_again_at_most_one_commit_window(make_app, instance_path, sink):
    delay, window = 0.02, 0.5
    server = sink(delay=delay)
    app = make_app()
    expected = queue_signatures(app, 60)
    settings = dict(DELIVERY_BATCH_SIZE=100, DELIVERY_LEASE_SECONDS=4, DELIVERY_COMMIT_SECONDS=window)
    first = start_worker(app, instance_path, server.port, **settings)
    try:
        # Kill it well inside its second batch of 100.
        wait_for(lambda: 120 <= len(server.inbox.envelopes) <= 180)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    at_kill = stored(app)
    assert "sending" in at_kill.values()  # killed in the middle of a batch

    second = start_worker(app, instance_path, server.port, **settings)
    try:
        wait_for(lambda: set(stored(app).values()) == {"sent"})
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    arrived = server.inbox.message_ids()
    assert set(arrived) == set(stored(app)) and len(arrived) == expected  # none lost
    again = {message_id for message_id, count in arrived.items() if count > 1}
    assert set(arrived.values()) <= {1, 2}
    # Only letters whose outcome was not committed went again: never one recorded sent.
    assert {at_kill[message_id] for message_id in again} <= {"sending"}
    # The bound. One connection, sent from the worker's own thread, and each
    # message takes at least `delay` at the server (asyncio.sleep never
    # returns early): the outcomes held for one commit are those of letters
    # sent within `window` seconds of the oldest, at most window/delay, plus
    # the one recorded as the window closes, which triggers the commit (a
    # kill during it loses them all); and one letter may be at the server.
    assert len(again) <= window / delay + 1 + 1
    assert window / delay + 2 < settings["DELIVERY_BATCH_SIZE"] / 2  # a bound tighter than "the batch"
    with app.app_context():
        assert Delivery.query.filter_by(campaign=SLUG).count() == expected


@pytest.mark.parametrize("window", [0, 1])
def test_an_outcome_that_cannot_be_written_stops_the_batch_and_its_letters_stay_claimed(make_app, sink, window):
    # The outcomes' writer fails from the third letter on (a disk that is
    # full, say; here a trigger refusing the row): the batch must stop,
    # loudly, not go on sending letters whose outcomes cannot be recorded;
    # what was committed before stays, and its plugins are told.
    server = sink()
    plugin = CommittedWhenTold()
    app = smtp_backed_app(make_app, server, plugins=[plugin], TARGET_HOURLY_CAP=0, DELIVERY_COMMIT_SECONDS=window)
    expected = queue_signatures(app, 10)
    with app.app_context():
        first_two = sorted(d.id for d in Delivery.query)[:2]
        db.session.execute(text(f"CREATE TRIGGER refuse_sent BEFORE UPDATE OF status ON delivery "
                                f"WHEN NEW.status = 'sent' AND NEW.id > {first_two[1]} "
                                f"BEGIN SELECT RAISE(ABORT, 'the disk is full'); END"))
        db.session.commit()
        with pytest.raises(Exception, match="the disk is full"):
            deliver_due()
    statuses = stored(app)
    assert len(statuses) == expected
    arrived = len(server.inbox.envelopes)
    if window:
        # Grouped: the batch's one commit failed whole; nothing recorded, nobody told.
        assert set(statuses.values()) == {"sending"} and arrived == expected and plugin.sent == {}
    else:
        # One commit a letter: the first two recorded and told; it stopped at the
        # first failed outcome, or at the letter sent while it was being written.
        assert sorted(statuses.values()) == ["sending"] * (expected - 2) + ["sent"] * 2
        assert plugin.sent == dict.fromkeys(first_two, "sent")
        assert arrived in (3, 4)
    # Nothing lost: every letter not recorded is still claimed, due again when its lease ends.


@pytest.mark.parametrize("seconds", [-1, "0.5", True, None, 60])
def test_delivery_commit_seconds_must_be_seconds_under_a_fifth_of_the_lease(make_app, seconds):
    with pytest.raises(ConfigError, match="DELIVERY_COMMIT_SECONDS .*under a fifth"):
        make_app(DELIVERY_COMMIT_SECONDS=seconds, DELIVERY_LEASE_SECONDS=300)
    # Changed in a running app, it stops the worker before anything is claimed.
    app = make_app(DELIVERY_LEASE_SECONDS=300)
    sign(app.test_client())
    app.config["DELIVERY_COMMIT_SECONDS"] = seconds
    with app.app_context(), pytest.raises(ValueError, match="DELIVERY_COMMIT_SECONDS .*under a fifth"):
        deliver_due()
    with app.app_context():
        assert {d.status for d in Delivery.query} == {"pending"}  # nothing claimed
