"""The systemd units docs/deploying.md points to are valid, order themselves after the databases, and purge daily."""

import configparser
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import ORGANISER, PASSWORD
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "docs" / "systemd"
NAMES = ["clamor-web.service", "clamor-deliver.service", "clamor-purge.service", "clamor-purge.timer"]


def read_unit(name):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNITS / name)
    return parser


def test_the_units_are_there_and_the_docs_point_to_them():
    assert sorted(p.name for p in UNITS.iterdir()) == sorted(NAMES)
    docs = (ROOT / "docs" / "deploying.md").read_text()
    for name in NAMES:
        assert f"docs/systemd/{name}" in docs, name


def test_the_services_wait_for_postgresql_and_redis_and_the_timer_runs_purge_daily():
    for name in ("clamor-web.service", "clamor-deliver.service"):
        unit = read_unit(name)["Unit"]
        assert "postgresql.service" in unit["After"] and "redis-server.service" in unit["After"], name
        assert "postgresql.service" in unit["Wants"], name
    assert read_unit("clamor-purge.service")["Service"]["ExecStart"].endswith("/clamor purge")
    timer = read_unit("clamor-purge.timer")["Timer"]
    assert timer["OnCalendar"] == "daily" and timer["Persistent"] == "true"
    assert timer["Unit"] == "clamor-purge.service"


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is not installed; `make test` installs Debian's systemd package")
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # verify wants each ExecStart to exist: the units point at /srv/clamor,
    # so they are checked as copies pointing at a fake /srv/clamor made here.
    srv = tmp_path / "srv" / "clamor"
    (srv / ".venv" / "bin").mkdir(parents=True)
    for program in ("gunicorn", "clamor"):
        path = srv / ".venv" / "bin" / program
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    for name in NAMES:
        (tmp_path / name).write_text((UNITS / name).read_text().replace("/srv/clamor", str(srv)))
    result = subprocess.run([analyze, "verify", "--man=no", *(str(tmp_path / n) for n in NAMES)],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "Failed to" in result.stderr and "bus" in result.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run in this container: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr
    assert "Unknown" not in result.stderr and "is not executable" not in result.stderr, result.stderr


def web_command(port, timeout):
    """The gunicorn command of clamor-web.service, bound to ``port``, with a worker timeout of ``timeout`` seconds."""
    words = shlex.split(read_unit("clamor-web.service")["Service"]["ExecStart"])
    assert words[0] == "/srv/clamor/.venv/bin/gunicorn" and words[-1] == "wsgi:app"
    bind = words.index("--bind")
    words[bind + 1] = f"127.0.0.1:{port}"
    assert "--timeout" not in words
    return [str(Path(sys.executable).parent / "gunicorn"), *words[1:-1], "--timeout", str(timeout), "wsgi:app"]


def test_the_readme_serves_with_the_units_command():
    command = read_unit("clamor-web.service")["Service"]["ExecStart"].replace("/srv/clamor/", "")
    assert command in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_an_export_outlasting_the_worker_timeout_arrives_whole(tmp_path):
    # gunicorn kills a worker that does not report for --timeout seconds (30
    # by default); a sync worker reports only between requests, so a large
    # export from the dashboard was cut off there, half a file with no error.
    from conftest import SLUG, add_organiser, form_fields, unused_port
    from test_redis import init_instance

    from app import create_app
    from app.extensions import db
    from app.models import Signature, utcnow

    rows, timeout = 150_000, 2
    instance = init_instance(tmp_path)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment.update(CLAMOR_INSTANCE_PATH=str(instance), CLAMOR_DELIVERY_WORKER="external",
                       CLAMOR_BASE_URL="http://127.0.0.1", CLAMOR_TRUSTED_HOSTS='["127.0.0.1"]')
    app = create_app({"DELIVERY_WORKER": "external"}, instance_path=instance)
    with app.app_context():
        now = utcnow()
        db.session.execute(insert(Signature), [
            {"campaign": SLUG, "name": f"Supporter {i}", "email": f"s{i}@example.org", "country": "FR",
             "language": "fr", "message": "Free him.", "status": "accepted", "opt_in": i % 3 == 0,
             "created_at": now} for i in range(rows)])
        db.session.commit()
    add_organiser(app)
    port = unused_port()
    server = subprocess.Popen(web_command(port, timeout), cwd=ROOT, env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        browser = requests.Session()
        deadline = time.monotonic() + 30
        while True:
            try:
                page = browser.get(f"{base}/admin/login", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        browser.post(f"{base}/admin/login", data={"csrf_token": form_fields(page.text)["csrf_token"],
                                                  "email": ORGANISER, "password": PASSWORD}, timeout=10)
        started = time.monotonic()
        download = browser.get(f"{base}/admin/{SLUG}/export.csv", timeout=120)
        took = time.monotonic() - started
    finally:
        server.terminate()
        _, log = server.communicate(timeout=30)
    assert download.status_code == 200
    lines = download.text.splitlines()
    assert len(lines) == rows + 1 and lines[-1].startswith(f"Supporter {rows - 1},"), (len(lines), log[-2000:])
    # Longer than the timeout, or the test shows nothing.
    assert took > timeout, took
    assert "WORKER TIMEOUT" not in log
