"""`clamor bounces read`: DSNs (RFC 3464), bounces in no standard form and auto-replies find their letter
by its VERP address or the returned Message-ID; what matches nothing is kept for an organiser."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import install_bounce_log, logged_bounces, sign

from app import verp
from app.bounces import AUTO_REPLY, OTHER, PERMANENT, TEMPORARY, read_report
from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery

BOUNCES = "bounces@union.test"
ROOT = Path(__file__).resolve().parent.parent


def dsn(recipient, target, message_id="<none@clamor.test>", status="5.1.1", action="failed",
        diagnostic="550 5.1.1 <{target}>: Recipient address rejected: User unknown"):
    """A DSN as Postfix writes one (RFC 3464), returning the headers of the original with its Reply-To."""
    diagnostic = diagnostic.format(target=target)
    return f"""\
Return-Path: <>
Delivered-To: {recipient}
From: MAILER-DAEMON@mx.gov.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {recipient}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="8B1C.1700000000/mx.gov.test"
Message-Id: <20261202031500.8B1C@mx.gov.test>

This is a MIME-encapsulated message.

--8B1C.1700000000/mx.gov.test
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.gov.test.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--8B1C.1700000000/mx.gov.test
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.gov.test
X-Postfix-Queue-ID: 8B1C
X-Postfix-Sender: rfc822; {recipient}
Arrival-Date: Wed,  2 Dec 2026 03:14:58 +0000 (UTC)

Final-Recipient: rfc822; {target}
Original-Recipient: rfc822;{target}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.gov.test
Diagnostic-Code: smtp; {diagnostic}

--8B1C.1700000000/mx.gov.test
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Anna Example via Free Erzhan <campaigns@clamor.test>
Reply-To: Anna Example <anna@example.org>
To: {target}
Subject: Free Erzhan Elshibayev
Message-ID: {message_id}

--8B1C.1700000000/mx.gov.test--
""".replace("\n", "\r\n").encode()


def qmail_bounce(recipient, target):
    """A bounce in no standard form: text only, nothing but the address it came to names the letter."""
    return f"""\
From: MAILER-DAEMON@old.gov.test
To: {recipient}
Subject: failure notice

Hi. This is the qmail-send program at old.gov.test.
I'm afraid I wasn't able to deliver your message to the following addresses.

<{target}>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Reply-To: Anna Example <anna@example.org>
""".replace("\n", "\r\n").encode()


def out_of_office(recipient, target):
    return f"""\
From: Press Office <{target}>
To: {recipient}
Subject: Out of office: Free Erzhan Elshibayev
Auto-Submitted: auto-replied
Content-Type: text/plain; charset=utf-8

I am away until Monday.
""".replace("\n", "\r\n").encode()


UNRELATED = b"From: someone@example.net\r\nTo: bounces@union.test\r\nSubject: hello\r\n\r\nAre you there?\r\n"


@pytest.fixture
def sent(make_app, instance_path):
    """An app whose five letters were sent (outbox_files) with VERP; ``(app, [(id, return path, target)])``."""
    install_bounce_log(instance_path)
    app = make_app(BOUNCE_ADDRESS=BOUNCES)
    sign(app.test_client(), email="anna@example.org", name="Anna Example")
    with app.app_context():
        assert deliver_due() == 5
        letters = [(d.id, verp.return_path(d.id, BOUNCES), d.target_key, d.message_id)
                   for d in Delivery.query.order_by(Delivery.id)]
    return app, letters


def statuses(app):
    with app.app_context():
        return {d.id: (d.status, d.note) for d in Delivery.query}


def bounce_hook_calls(instance_path):
    return [tuple(call) for call in logged_bounces(instance_path)]


def read(app, raw, **kwargs):
    result = app.test_cli_runner().invoke(args=["bounces", "read", *kwargs.pop("args", ())], input=raw, **kwargs)
    assert result.exit_code == 0, result.output
    return result.output.strip()


@pytest.mark.slow
def test_a_dsn_marks_that_letter_bounced_and_no_other(sent, instance_path):
    app, letters = sent
    before = statuses(app)
    delivery_id, return_path, target, _ = letters[1]
    assert read(app, dsn(return_path, target)) == f"bounced: delivery {delivery_id}"
    after = statuses(app)
    status, note = after.pop(delivery_id)
    assert status == "bounced"
    assert note.startswith("DSN failed 5.1.1 smtp; 550 5.1.1")
    assert target in note
    # Nothing of the supporter's: not their address, not their name from the returned Reply-To.
    assert "anna" not in note.lower() and "example.org" not in note
    assert after == {k: v for k, v in before.items() if k != delivery_id}
    assert bounce_hook_calls(instance_path) == [(delivery_id, "bounced", note)]


@pytest.mark.slow
def test_a_diagnostic_that_quotes_the_supporter_is_stored_without_them(sent):
    app, letters = sent
    delivery_id, return_path, target, _ = letters[0]
    diagnostic = "550 5.7.1 Mail from ANNA EXAMPLE <anna@example.org> for <{target}> refused as spam (Annabel)"
    raw = dsn(return_path, target, status="5.7.1", diagnostic=diagnostic)
    assert read(app, raw) == f"bounced: delivery {delivery_id}"
    assert statuses(app)[delivery_id] == (
        "bounced", f"DSN failed 5.7.1 smtp; 550 5.7.1 Mail from <supporter> <supporter> for <{target}> refused as spam "
                   "(Annabel)")


@pytest.mark.slow
def test_the_returned_message_id_finds_the_letter_without_verp(sent):
    app, letters = sent
    delivery_id, _, target, message_id = letters[2]
    assert message_id.startswith("<")
    # Delivered to the bounce address without a token: only the original's Message-ID names the letter.
    assert read(app, dsn(BOUNCES, target, message_id=message_id)) == f"bounced: delivery {delivery_id}"
    assert read(app, dsn(BOUNCES, target, message_id=message_id.strip("<>"), status="4.2.2",
                         action="delayed")) == f"note: delivery {delivery_id}"


@pytest.mark.slow
def test_a_temporary_dsn_keeps_the_letter_sent_with_a_note(sent, instance_path):
    app, letters = sent
    delivery_id, return_path, target, _ = letters[0]
    raw = dsn(return_path, target, status="4.2.2", action="delayed", diagnostic="452 4.2.2 Mailbox full")
    assert read_report(raw).kind == TEMPORARY
    assert read(app, raw) == f"note: delivery {delivery_id}"
    assert statuses(app)[delivery_id] == ("sent", "DSN delayed 4.2.2 smtp; 452 4.2.2 Mailbox full")
    assert bounce_hook_calls(instance_path) == []


@pytest.mark.slow
def test_a_bounce_in_no_standard_form_is_matched_by_its_verp_address(sent):
    app, letters = sent
    delivery_id, return_path, target, _ = letters[3]
    raw = qmail_bounce(return_path, target)
    assert read_report(raw).kind == PERMANENT
    assert read(app, raw) == f"bounced: delivery {delivery_id}"
    status, note = statuses(app)[delivery_id]
    assert (status, note) == ("bounced", "failure notice")


@pytest.mark.slow
def test_the_envelope_recipient_postfix_passes_finds_the_letter(sent):
    app, letters = sent
    delivery_id, return_path, target, _ = letters[4]
    # Delivered to the bare bounce address (an alias rewrote To): the pipe's $ORIGINAL_RECIPIENT has the token.
    raw = qmail_bounce(BOUNCES, target)
    assert read(app, raw, env={"ORIGINAL_RECIPIENT": return_path.upper()}) == f"bounced: delivery {delivery_id}"
    other_id, other_path = letters[0][:2]
    assert read(app, raw, args=["--recipient", other_path]) == f"bounced: delivery {other_id}"


@pytest.mark.slow
def test_an_auto_reply_is_a_note_not_a_bounce(sent, instance_path):
    app, letters = sent
    delivery_id, return_path, target, _ = letters[1]
    raw = out_of_office(return_path, target)
    assert read_report(raw).kind == AUTO_REPLY
    assert read(app, raw) == f"note: delivery {delivery_id}"
    assert statuses(app)[delivery_id] == ("sent", "auto-reply: Out of office: Free Erzhan Elshibayev")
    assert bounce_hook_calls(instance_path) == []


@pytest.mark.slow
def test_a_message_that_matches_no_letter_is_kept(sent, instance_path):
    app, letters = sent
    before = statuses(app)
    assert read_report(UNRELATED).kind == OTHER
    output = read(app, UNRELATED)
    assert output.startswith("kept: ")
    path = Path(output.removeprefix("kept: "))
    assert path.parent == instance_path / "bounces" / "unmatched"
    assert path.read_bytes() == UNRELATED
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # A forged token (another letter's id with this one's MAC) is no match either: kept, nothing changed.
    delivery_id, return_path, target, _ = letters[0]
    token = return_path.partition("+")[2].partition("@")[0]
    forged = f"bounces+{token[:-1]}{'a' if token[-1] != 'a' else 'b'}@union.test"
    assert read(app, dsn(forged, target)).startswith("kept: ")
    assert len(list(path.parent.iterdir())) == 2
    assert statuses(app) == before


@pytest.mark.slow
def test_a_bounce_of_a_letter_not_sent_changes_nothing(make_app):
    app = make_app(BOUNCE_ADDRESS=BOUNCES)
    sign(app.test_client(), email="anna@example.org")
    with app.app_context():
        delivery = Delivery.query.order_by(Delivery.id).first()
        delivery_id, return_path, target = delivery.id, verp.return_path(delivery.id, BOUNCES), delivery.target_key
    assert read(app, dsn(return_path, target)) == f"ignored: delivery {delivery_id}"
    assert statuses(app)[delivery_id] == ("pending", "")


@pytest.mark.slow
def test_the_clamor_command_reads_a_dsn_from_a_pipe(sent, app_config, instance_path):
    app, letters = sent
    delivery_id, return_path, target, _ = letters[2]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment.update(
        CLAMOR_INSTANCE_PATH=str(instance_path), CLAMOR_SECRET_KEY=app_config["SECRET_KEY"],
        CLAMOR_SQLALCHEMY_DATABASE_URI=app_config["SQLALCHEMY_DATABASE_URI"], CLAMOR_BOUNCE_ADDRESS=BOUNCES,
        CLAMOR_BASE_URL="http://localhost", CLAMOR_DELIVERY_WORKER="external",
        # As Postfix's pipe(8) passes it; the DSN's own headers name only the bare bounce address.
        ORIGINAL_RECIPIENT=return_path,
    )
    result = subprocess.run([Path(sys.executable).parent / "clamor", "bounces", "read"],
                            input=dsn(BOUNCES, target), env=environment, cwd=ROOT, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == f"bounced: delivery {delivery_id}"
    assert statuses(app)[delivery_id][0] == "bounced"
    with app.app_context():
        assert db.session.query(Delivery).filter_by(status="bounced").count() == 1
