"""Faults: a mail server that is down, a worker killed mid-batch, workers racing.

Every letter is counted where it lands: by Message-ID at a real aiosmtpd.
`clamor deliver` runs as its own process, as in production.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SLUG, sign, unused_port

from app.delivery import deliver_due, queue_deliveries
from app.extensions import db
from app.models import Delivery, Signature

CLAMOR = Path(sys.executable).parent / "clamor"


def queue_signatures(app, count):
    """Store ``count`` signatures with their deliveries, as the web form would."""
    with app.app_context():
        campaign = app.extensions["clamor"].campaigns[SLUG]
        for n in range(count):
            signature = Signature(campaign=SLUG, name=f"Supporter {n}", email=f"s{n}@example.org",
                                  message="Free Erzhan Elshibayev.", language="fr")
            queue_deliveries(signature, campaign, app.config)
            db.session.add(signature)
        db.session.commit()
        return count * len(campaign.targets)


def stored(app):
    with app.app_context():
        return {d.message_id: d.status for d in Delivery.query}


def start_worker(app, instance_path, port, *args, **settings):
    """`clamor deliver` in its own process, configured through CLAMOR_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    env.update(
        CLAMOR_INSTANCE_PATH=str(instance_path),
        CLAMOR_SECRET_KEY="x",
        CLAMOR_BASE_URL="http://localhost",
        CLAMOR_SQLALCHEMY_DATABASE_URI=app.config["SQLALCHEMY_DATABASE_URI"],
        CLAMOR_DELIVERY='{"email": "smtp"}',
        CLAMOR_SMTP_HOST="127.0.0.1",
        CLAMOR_SMTP_PORT=str(port),
        CLAMOR_SENDER_ADDRESS="campaigns@clamor.test",
        CLAMOR_DELIVERY_WORKER="external",
        CLAMOR_TARGET_HOURLY_CAP="0",
        CLAMOR_DELIVERY_POLL_SECONDS="0.2",
    )
    env.update({f"CLAMOR_{key}": str(value) for key, value in settings.items()})
    return subprocess.Popen([CLAMOR, "deliver", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout=90):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_mail_server_that_is_down_loses_nothing(make_app, sink):
    port = unused_port()  # nothing listens here yet
    app = make_app(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_TIMEOUT=5,
                   TARGET_HOURLY_CAP=0, DELIVERY_RETRY_BASE=0.001, DELIVERY_BATCH_SIZE=1000)
    client = app.test_client()
    targets = len(app.extensions["clamor"].campaigns[SLUG].targets)
    # 200 supporters sign through the form while the worker keeps finding the server down.
    for n in range(200):
        assert sign(client, name=f"Supporter {n}", email=f"s{n}@example.org").status_code == 303
        if n in (99, 199):
            with app.app_context():
                deliver_due()  # one pass: each due letter tries once, and waits
    expected = 200 * targets
    with app.app_context():
        assert Delivery.query.count() == expected
        assert Delivery.query.filter_by(status="sent").count() == 0
        assert Delivery.query.filter(Delivery.status.in_(["pending", "sending"])).count() == expected

    server = sink(port=port)
    with app.app_context():
        while deliver_due():
            pass
    statuses = stored(app)
    assert set(statuses.values()) == {"sent"}
    arrived = server.inbox.message_ids()
    assert sum(arrived.values()) == expected  # exactly 200 × targets: none lost, none twice
    assert set(arrived) == set(statuses)


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_duplicates_at_most_its_letter_in_flight(make_app, instance_path, sink):
    server = sink(delay=0.01)
    app = make_app()
    expected = queue_signatures(app, 100)
    first = start_worker(app, instance_path, server.port, DELIVERY_BATCH_SIZE=20, DELIVERY_LEASE_SECONDS=2)
    try:
        # Kill it well inside a batch of 20: a few letters of it arrived, more are to come.
        wait_for(lambda: len(server.inbox.envelopes) >= 100 and 2 <= len(server.inbox.envelopes) % 20 <= 14)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    with app.app_context():
        in_flight = Delivery.query.filter_by(status="sending").count()
    assert in_flight > 0  # killed in the middle of a batch

    second = start_worker(app, instance_path, server.port, DELIVERY_BATCH_SIZE=20, DELIVERY_LEASE_SECONDS=2)
    try:
        wait_for(lambda: set(stored(app).values()) == {"sent"})
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    arrived = server.inbox.message_ids()
    assert set(arrived) == set(stored(app))  # none lost
    # Each letter's outcome is committed right after the server accepts it,
    # while the connection sends the next: only the letters at the server when
    # the worker died (at most two with one connection) can arrive twice.
    assert sum(arrived.values()) - expected <= 2
    assert len(arrived) == expected


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_workers_send_every_letter_exactly_once(database, request, make_app, instance_path, sink):
    overrides = {}
    if database == "postgresql":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("postgres_cluster")()
    server = sink(delay=0.004)
    app = make_app(**overrides)
    expected = queue_signatures(app, 100)
    workers = [start_worker(app, instance_path, server.port, "--once", DELIVERY_BATCH_SIZE=10) for _ in range(2)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    attempted = [int(out.split()[0]) for out, _ in outputs]
    assert all(attempted), attempted  # both workers took part
    assert sum(attempted) == expected
    arrived = server.inbox.message_ids()
    assert set(arrived.values()) == {1}
    assert set(arrived) == set(stored(app))
    assert set(stored(app).values()) == {"sent"}
