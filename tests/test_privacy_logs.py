"""What logs, stored errors and operators' screens say about a supporter: ids, never their address.

Mail to a supporter's own mailbox (the confirmation email) fails with replies
that quote their address; the development server's request log would start
with the client's address. Both go through real servers here: aiosmtpd on
loopback, and `clamor run` as a child process.
"""

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import ROOT, SLUG, add_organiser, form_fields, login, sign, smtp_backed_app, unused_port

from app.delivery import deliver_due
from app.models import Delivery

SUPPORTER = "anna@example.org"
REFUSED = f"550 5.1.1 <{SUPPORTER}>: Recipient address rejected"
#: A target's address, as a server may quote it in its reply to a letter.
TARGET = "press@prokuror.kz"
#: The forwarded client address of the request-log test.
CLIENT = "203.0.113.77"


def clamor_records(caplog):
    """Every captured record but the test SMTP server's own (aiosmtpd logs each command it reads)."""
    return [r for r in caplog.records if not r.name.startswith("mail.log")]


def record_text(record):
    return record.getMessage() + (record.exc_text or "") + (str(record.exc_info[1]) if record.exc_info else "")


@pytest.mark.slow
def test_a_refused_confirmation_email_names_its_supporter_in_no_log_error_or_screen(make_app, scripted_smtp, caplog):
    caplog.set_level(logging.DEBUG)
    controller, _ = scripted_smtp(rcpt_replies=[REFUSED])
    app = smtp_backed_app(make_app, controller, CONFIRM_SUPPORTER_EMAIL=True)
    assert sign(app.test_client(), email=SUPPORTER).status_code == 303
    with app.app_context():
        assert deliver_due() == 1  # only the confirmation is due; the letters wait for it
        confirmation = Delivery.query.filter_by(kind="confirmation").one()
        assert confirmation.status == "failed"
        # The reason stays readable for organisers.
        assert confirmation.last_error.endswith("answered 550 5.1.1 <supporter>: Recipient address rejected")
        assert not [d.id for d in Delivery.query if SUPPORTER in (d.last_error or "")]

    records = clamor_records(caplog)
    assert any(f"delivery {confirmation.id} failed" in r.getMessage() for r in records)
    assert not [record_text(r) for r in records if SUPPORTER in record_text(r)]

    output = app.test_cli_runner().invoke(args=["deliveries"]).output
    assert "supporters' own mail" in output and "550 5.1.1 <supporter>" in output
    assert SUPPORTER not in output

    add_organiser(app)
    client = app.test_client()
    login(client)
    dashboard = client.get(f"/admin/{SLUG}/")
    assert dashboard.status_code == 200
    assert SUPPORTER not in dashboard.get_data(as_text=True)


@pytest.mark.slow
def test_clamor_deliveries_counts_supporters_mail_in_one_row(make_app, scripted_smtp):
    # Three supporters waiting for their confirmation: one row, three pending,
    # and the oldest pending named by its kind, not by its address.
    controller, _ = scripted_smtp()
    app = smtp_backed_app(make_app, controller, CONFIRM_SUPPORTER_EMAIL=True)
    addresses = ["anna@example.org", "bob@example.net", "carla@example.com"]
    for address in addresses:
        assert sign(app.test_client(), email=address).status_code == 303
    output = app.test_cli_runner().invoke(args=["deliveries"]).output
    rows = [line for line in output.splitlines() if line.startswith("supporters' own mail ")]
    assert len(rows) == 1 and rows[0].split()[3:5] == ["3", "0"]  # pending 3, sending 0
    assert "oldest pending: #" in output and "to supporters' own mail (confirmation)" in output
    assert not [a for a in addresses if a in output]


#: A delivery backend that fails the way a careless library does: an
#: unexpected exception whose message quotes the recipient.
CARELESS_BACKEND = '''
from app import hookimpl
from app.delivery import DeliveryBackend


class Careless(DeliveryBackend):
    name = "careless"

    def send(self, letter):
        raise RuntimeError(f"no route to the mailbox of {letter.to_address}")


@hookimpl
def register_delivery_backends():
    return [Careless]
'''


def test_an_unexpected_error_on_supporter_mail_is_logged_without_traceback_or_address(make_app, instance_path, caplog):
    caplog.set_level(logging.DEBUG)
    (instance_path / "plugins").mkdir()
    (instance_path / "plugins" / "careless.py").write_text(CARELESS_BACKEND)
    app = make_app(DELIVERY={"email": "careless"}, CONFIRM_SUPPORTER_EMAIL=True)
    assert sign(app.test_client(), email=SUPPORTER).status_code == 303
    with app.app_context():
        deliver_due()
        confirmation = Delivery.query.filter_by(kind="confirmation").one()
        assert (confirmation.status, confirmation.last_error) == (
            "pending", "RuntimeError: no route to the mailbox of <supporter>")
    records = clamor_records(caplog)
    unexpected = [r for r in records if "unexpected error" in r.getMessage()]
    assert unexpected and all(r.exc_info is None for r in unexpected)
    assert "RuntimeError" in unexpected[0].getMessage()
    assert not [record_text(r) for r in records if SUPPORTER in record_text(r)]


@pytest.mark.slow
def test_a_letters_error_keeps_the_target_but_not_the_supporters_reply_to(make_app, scripted_smtp, caplog):
    caplog.set_level(logging.DEBUG)
    controller, _ = scripted_smtp(
        rcpt_replies=[f"550 5.1.1 <{TARGET}>: mailbox unavailable"],
        data_replies=[f"550 5.7.1 Reply-To {SUPPORTER} may not write to this office"],
    )
    app = smtp_backed_app(make_app, controller)
    assert sign(app.test_client(), email=SUPPORTER).status_code == 303
    with app.app_context():
        deliver_due()
        first, second = Delivery.query.order_by(Delivery.id).limit(2).all()
        assert first.status == "failed" and first.last_error.endswith(f"550 5.1.1 <{TARGET}>: mailbox unavailable")
        assert second.status == "failed"
        assert second.last_error.endswith("550 5.7.1 Reply-To <supporter> may not write to this office")
    assert not [record_text(r) for r in clamor_records(caplog) if SUPPORTER in record_text(r)]
    output = app.test_cli_runner().invoke(args=["deliveries"]).output
    assert TARGET in output and SUPPORTER not in output


# --- the development server's request log -----------------------------------


def clamor(*args, instance, env=None, **kwargs):
    """The installed `clamor` command with ``instance``, as an organiser runs it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment.update(CLAMOR_INSTANCE_PATH=str(instance), **(env or {}))
    return [Path(sys.executable).parent / "clamor", *args], dict(env=environment, cwd=ROOT, **kwargs)


@pytest.mark.slow
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


@pytest.mark.parametrize("text, redacted", [
    (REFUSED, "550 5.1.1 <supporter>: Recipient address rejected"),
    ("{'anna@example.org': (550, b'5.1.1 <anna@example.org>: no')}",
     "{'<supporter>': (550, b'5.1.1 <supporter>: no')}"),
    (r"b'5.1.1 <\xd0\x9f\xd0\xa0@example.org> unknown'", "b'5.1.1 <supporter> unknown'"),
    ('"anna example"@example.org and anna@[192.0.2.1] refused', "<supporter> and <supporter> refused"),
    ("SMTP mx.example.org:25 answered 451 4.7.1 try again at 12:00",
     "SMTP mx.example.org:25 answered 451 4.7.1 try again at 12:00"),
])
def test_redact_addresses(text, redacted):
    from app.security import redact_addresses

    assert redact_addresses(text) == redacted


@pytest.mark.slow
def test_the_letter_failed_hook_gets_no_supporter_address(make_app, scripted_smtp, instance_path):
    (instance_path / "plugins").mkdir(exist_ok=True)
    (instance_path / "plugins" / "failwatch.py").write_text(
        "from app import hookimpl\n\nSEEN = []\n\n\n@hookimpl\ndef letter_failed(delivery, error):\n"
        "    SEEN.append((type(error).__name__, str(error), error.__cause__))\n")
    controller, _ = scripted_smtp(rcpt_replies=[REFUSED])
    app = smtp_backed_app(make_app, controller, CONFIRM_SUPPORTER_EMAIL=True)
    assert sign(app.test_client(), email=SUPPORTER).status_code == 303
    with app.app_context():
        assert deliver_due() == 1
    watcher = next(p for p in app.extensions["clamor"].plugin_manager.get_plugins() if hasattr(p, "SEEN"))
    (kind, text, cause), = watcher.SEEN
    assert kind == "PermanentFailure" and cause is None
    assert "550 5.1.1 <supporter>" in text and SUPPORTER not in text
