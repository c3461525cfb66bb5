"""Rate limits shared by two server processes through a real Redis (RATELIMIT_STORAGE_URI).

Two gunicorn processes serve one instance. With ``memory://`` each counts on
its own, so a third letter through the other process gets through (the
baseline: this is what Redis is for); with ``redis://`` the third letter is
refused whichever process it reaches, and Redis holds no supporter's address.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
import requests
from conftest import ROOT, SLUG, form_fields, unused_port

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def redis_url():
    """A throwaway Redis server on 127.0.0.1, nothing saved to disk; yields its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; `make test` installs it with apt-get")
        pytest.skip("redis-server not installed (make test installs it)")
    port = unused_port()
    folder = tempfile.mkdtemp(prefix="clamor-redis-")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.05)
    yield url
    server.terminate()
    server.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


def serve(stack, instance, storage, logs=None, **settings):
    """Start one gunicorn process on ``instance`` with rate-limit ``storage``; return its base URL.

    ``settings``: more CLAMOR_* variables. When the process has stopped (at
    the end of ``stack``), its standard error is appended to ``logs``.
    """
    port = unused_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment.update(
        CLAMOR_INSTANCE_PATH=str(instance),
        CLAMOR_RATELIMIT_STORAGE_URI=storage,
        CLAMOR_SUBMIT_RATE_LIMIT="2 per minute",
        CLAMOR_FILL_TIME_MIN="0",
        CLAMOR_DELIVERY_WORKER="external",
        **settings,
    )
    server = subprocess.Popen(
        [Path(sys.executable).parent / "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )

    def stop():
        server.terminate()
        _, stderr = server.communicate(timeout=30)
        if logs is not None:
            logs.append(stderr)

    stack.callback(stop)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{base}/fr/{SLUG}/", timeout=5)
            return base
        # A read timeout too: the worker may still be importing the app.
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.1)


def sign_over_http(base, email, headers=None):
    """Open the campaign page, fill in the form, post it (both with ``headers``); return the status code."""
    browser = requests.Session()
    browser.headers.update(headers or {})
    url = f"{base}/fr/{SLUG}/"
    data = form_fields(browser.get(url, timeout=10).text)
    data.update(name="Anna Example", email=email, organisation="", country="FR",
                message="Free Erzhan Elshibayev now.", opt_in="no")
    return browser.post(url, data=data, allow_redirects=False, timeout=10).status_code


def init_instance(tmp_path):
    """`clamor init` in a fresh instance folder; returns its path."""
    instance = tmp_path / "instance"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment["CLAMOR_INSTANCE_PATH"] = str(instance)
    subprocess.run([Path(sys.executable).parent / "clamor", "init"], env=environment, cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    return instance


def third_letter_status(tmp_path, storage):
    """Two letters through process A and B, then a third through B: its status code."""
    instance = init_instance(tmp_path)
    with ExitStack() as stack:
        a, b = serve(stack, instance, storage), serve(stack, instance, storage)
        assert sign_over_http(a, "anna@example.org") == 303
        assert sign_over_http(b, "bob@example.org") == 303
        return sign_over_http(b, "carla@example.org")


def test_with_memory_storage_each_process_counts_alone(tmp_path):
    assert third_letter_status(tmp_path, "memory://") == 303


def test_with_redis_the_processes_share_one_count_and_redis_holds_no_address(tmp_path, redis_url):
    assert third_letter_status(tmp_path, redis_url) == 429
    keys = b" ".join(redis.Redis.from_url(redis_url).keys("*")).decode()
    assert "email:" in keys  # the per-address limit is there, hashed
    assert "anna" not in keys and "example.org" not in keys


def test_behind_a_proxy_redis_and_the_servers_log_hold_no_client_address(tmp_path, redis_url):
    client = "203.0.113.77"
    store = redis.Redis.from_url(redis_url)
    store.flushdb()
    instance = init_instance(tmp_path)
    logs = []
    with ExitStack() as stack:
        base = serve(stack, instance, redis_url, logs=logs, CLAMOR_PROXY_FIX_X_FOR="1")
        statuses = [sign_over_http(base, f"person{i}@example.org", headers={"X-Forwarded-For": client})
                    for i in range(3)]
    assert statuses == [303, 303, 429]
    stored = []
    for key in store.scan_iter("*"):
        kind = store.type(key)
        value = store.get(key) if kind == b"string" else store.dump(key)
        stored.append(key + b" " + value)
    assert stored  # the counters are there ...
    assert not [entry for entry in stored if client.encode() in entry]  # ... keyed by a hash
    (log,) = logs
    assert "exceeded" in log  # Flask-Limiter's line about the third letter, by the hash
    assert client not in log
    for path in instance.glob("clamor.sqlite3*"):
        assert client.encode() not in path.read_bytes(), path
