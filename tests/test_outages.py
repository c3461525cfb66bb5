"""Redis or PostgreSQL stop while the site runs: signing goes on, or says the truth and keeps the letter.

Real servers, stopped mid-run: a redis-server behind two rate limits served
by gunicorn, and a PostgreSQL cluster of this test's own.
"""

import logging
import os
import shutil
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
from conftest import SLUG, form_fields, postgres_or_skip, unused_port
from pgcluster import Cluster
from test_redis import init_instance, serve, sign_over_http

from app.extensions import db
from app.models import Signature


def start_redis(port, folder):
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; `make test` installs it with apt-get")
        pytest.skip("redis-server not installed (make test installs it)")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.05)


@pytest.mark.redis
def test_signing_goes_on_with_per_process_limits_when_redis_stops(tmp_path):
    port = unused_port()
    server = start_redis(port, str(tmp_path))
    instance = init_instance(tmp_path)
    logs = []
    try:
        with ExitStack() as stack:
            # SUBMIT_RATE_LIMIT is 2 per minute in serve().
            base = serve(stack, instance, f"redis://127.0.0.1:{port}/0", logs=logs)
            assert sign_over_http(base, "anna@example.org") == 303
            server.terminate()
            server.wait(timeout=10)
            # Counted in the process's memory from now on: two more, then the limit.
            statuses = [sign_over_http(base, f"person{i}@example.org") for i in range(3)]
    finally:
        if server.poll() is None:
            server.kill()
    assert statuses == [303, 303, 429]
    (log,) = logs
    assert log.count("falling back to in-memory storage") == 1, log
    assert "Traceback" not in log


@pytest.fixture
def stoppable_postgres():
    """A PostgreSQL cluster this test may stop and start; yields (database URI, stop, start)."""
    cluster = Cluster(postgres_or_skip(), prefix="clamor-pg-outage-")
    cluster.start()
    yield cluster.create_database("outage"), cluster.stop, cluster.start
    cluster.destroy()


LETTER = "Mon propre texte, écrit avec soin : libérez Erzhan Elshibayev."


def fields(client):
    data = form_fields(client.get(f"/fr/{SLUG}/").get_data(as_text=True))
    data.update(name="Anna Example", email="anna@example.org", organisation="Syndicat", country="FR",
                message=LETTER, opt_in="no")
    return data


@pytest.mark.postgres
def test_postgresql_down_answers_503_keeps_the_letter_and_stores_once_when_back(stoppable_postgres, make_app, caplog):
    uri, stop, start = stoppable_postgres
    app = make_app(SQLALCHEMY_DATABASE_URI=uri)
    client = app.test_client()
    data = fields(client)
    stop()
    caplog.set_level(logging.ERROR, logger="app.errors")
    responses = [client.post(f"/fr/{SLUG}/", data=data) for _ in range(3)]
    for response in responses:
        html = response.get_data(as_text=True)
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        assert LETTER in html  # what the supporter typed, in the form again
        assert 'value="Anna Example"' in html and 'value="anna@example.org"' in html
        assert "rien n’a été enregistré" in html or "rien n'a été enregistré" in html or "nothing was stored" in html
        assert "may not have been stored" not in html
    # The page itself is served from the page cache while the database is down.
    page = client.get(f"/fr/{SLUG}/")
    assert page.status_code == 200 and LETTER not in page.get_data(as_text=True)
    failures = [r for r in caplog.records if r.name == "app.errors"]
    assert len(failures) == 3  # one line per failure ...
    assert sum(1 for r in failures if r.exc_info) == 1  # ... and one traceback
    assert all("\n" not in r.getMessage() for r in failures)

    start()
    again = client.post(f"/fr/{SLUG}/", data=fields(client))
    assert again.status_code == 303
    with app.app_context():
        assert db.session.query(Signature).count() == 1
        assert db.session.query(Signature).one().message == LETTER


@pytest.mark.slow
def test_the_delivery_worker_logs_an_outage_in_one_line_a_poll_and_one_traceback(make_app, tmp_path, caplog):
    import threading

    from app.delivery import DeliveryWorker

    folder = tmp_path / "db"
    folder.mkdir()
    app = make_app(DELIVERY_POLL_SECONDS=0.02, SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder / 'clamor.sqlite3'}")
    # The database goes away: its folder is no longer there, so no connection opens.
    with app.app_context():
        db.engine.dispose()
    shutil.rmtree(folder)
    worker = DeliveryWorker(app)
    with caplog.at_level(logging.ERROR, logger="app.delivery"):
        thread = threading.Thread(target=worker.run_forever)
        thread.start()
        time.sleep(1)
        worker.stop()
        thread.join(10)
    failures = [r for r in caplog.records if "batch failed" in r.getMessage()]
    assert len(failures) >= 5
    assert [r for r in failures if r.exc_info] == failures[:1]
