"""What logs say about a supporter: never their IP address.

The development server's request log would start with the client's address;
checked on `clamor run` as a child process.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from conftest import ROOT, SLUG, form_fields, unused_port

#: The forwarded client address of the request-log test.
CLIENT = "203.0.113.77"


# --- the development server's request log -----------------------------------


def clamor(*args, instance, env=None, **kwargs):
    """The installed `clamor` command with ``instance``, as an organiser runs it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment.update(CLAMOR_INSTANCE_PATH=str(instance), **(env or {}))
    return [Path(sys.executable).parent / "clamor", *args], dict(env=environment, cwd=ROOT, **kwargs)


def test_clamor_run_logs_requests_without_the_forwarded_client_address(tmp_path):
    instance = tmp_path / "instance"
    command, options = clamor("init", instance=instance)
    subprocess.run(command, **options, check=True, capture_output=True, timeout=120)
    port = unused_port()
    command, options = clamor(
        "run", "--host", "127.0.0.1", "--port", str(port), instance=instance,
        env={"CLAMOR_PROXY_FIX_X_FOR": "1", "CLAMOR_SUBMIT_RATE_LIMIT": "2 per minute", "CLAMOR_FILL_TIME_MIN": "0",
             "CLAMOR_DELIVERY_WORKER": "external"},
    )
    server = subprocess.Popen(command, **options, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(base + "/", timeout=5)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        statuses = []
        for i in range(3):
            browser = requests.Session()
            browser.headers["X-Forwarded-For"] = CLIENT
            url = f"{base}/fr/{SLUG}/"
            data = form_fields(browser.get(url, timeout=10).text)
            data.update(name="Anna Example", email=f"person{i}@example.org", country="FR",
                        message="Free Erzhan Elshibayev now.", opt_in="no")
            statuses.append(browser.post(url, data=data, allow_redirects=False, timeout=10).status_code)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            stdout, stderr = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            stdout, stderr = server.communicate()
    assert statuses == [303, 303, 429]
    log = re.sub(r"\x1b\[[0-9;]*m", "", stdout + stderr)  # Werkzeug colours the line of a 429
    # The request lines and the limiter's breach are there, without an address.
    assert f'"POST /fr/{SLUG}/ HTTP/1.1" 429' in log and "exceeded" in log
    assert CLIENT not in log
    assert not [line for line in log.splitlines() if "127.0.0.1 - -" in line]
    for path in instance.glob("clamor.sqlite3*"):
        assert CLIENT.encode() not in path.read_bytes(), path
