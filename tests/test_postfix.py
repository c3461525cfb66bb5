"""Through a real MTA: Clamor's letters go out by `smtp` into Debian's Postfix, as a union's relay.

What the targets' mail server (an aiosmtpd of the test's, where Postfix
relays to) receives must be Clamor's bytes exactly, with only Postfix's
``Received`` line in front; what Postfix refuses must be recorded as
refused; and the DSN Postfix itself writes, when the targets' server
refuses a letter it had accepted, must come back through the bounce pipe
that docs/delivery.md tells an organiser to add to Postfix, and mark that
letter bounced. The pipe lines are read from the docs, so the test breaks
if the documented configuration stops working. The stand-in for the
tests' hand-written DSNs (tests/test_bounces.py) is Postfix's own.
"""

import dataclasses
import os
import re
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from conftest import ROOT, Inbox, sign, unused_port
from postfix import DOMAIN, start_postfix

from app import verp
from app.delivery import build_letter, deliver_due
from app.extensions import db
from app.models import Delivery

pytestmark = pytest.mark.slow

BOUNCES = f"bounces@{DOMAIN}"
#: The example campaign's targets, and what becomes of a letter to each.
RELAYED = ("press@mfa.kz", "knprkcampaign@gmail.com")
#: Refused by the targets' server after Postfix accepted the letter: Postfix writes a DSN.
GONE = "press@akorda.kz"
#: Refused by Postfix itself at RCPT TO, for good and for now.
REFUSED, GREYLISTED = "press@prokuror.kz", "zhumakovasholpan@gmail.com"
NAME = "Сейітқали Бекмұхамбетов"
EMAIL = "seitkali@example.org"


class TargetsServer(Inbox):
    """The targets' mail server: refuses ``GONE`` at RCPT TO with 550 5.1.1, keeps every message it accepts."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == GONE:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"


def documented_postfix():
    """(main.cf lines, master.cf lines, transport line) for bounces in docs/delivery.md, made to fit this machine.

    The pipe's command becomes the capture script (which keeps what Postfix
    passed it) followed by the documented command line with this checkout's
    clamor; its user ``clamor`` becomes ``nobody``; the domain, ours.
    """
    docs = (ROOT / "docs" / "delivery.md").read_text()
    main = re.search(r"# /etc/postfix/main.cf\n(recipient_delimiter = .*)\n", docs).group(1)
    master = re.search(r"# /etc/postfix/master.cf\n(clamor-bounces .*\n(?:  .*\n)+)", docs).group(1)
    transport = re.search(r"\n(bounces@your-union.org\s+clamor-bounces:)\n", docs).group(1)
    clamor = Path(sys.executable).parent / "clamor"
    return (main,
            master.replace("user=clamor", "user=nobody").replace("argv=/srv/clamor/.venv/bin/clamor",
                                                                 "argv={capture} " + str(clamor)),
            transport.replace("your-union.org", DOMAIN) + "\n")


@pytest.fixture
def relay():
    """(Postfix, the targets' server's inbox): Postfix relaying to the targets' server, with the bounce pipe."""
    inbox = TargetsServer()
    targets = Controller(inbox, hostname="127.0.0.1", port=unused_port())
    targets.start()
    main, master, transport = documented_postfix()
    try:
        postfix = start_postfix(
            unused_port(), targets.port,
            recipient_access={REFUSED: "REJECT 5.7.1 Mailbox closed by order of the prosecutor",
                              GREYLISTED: "450 4.7.1 Greylisted, please try again later"},
            main_lines=main, master_lines=master, transport=transport)
    except BaseException:
        targets.stop()
        raise
    yield postfix, inbox
    postfix.stop()
    targets.stop()


@pytest.fixture
def sent(relay, make_app):
    """An app that sent one signature's five letters into Postfix.

    Returns (app, Postfix, the targets' inbox, {target: (delivery id, VERP address)}).
    """
    postfix, inbox = relay
    app = make_app(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=postfix.port,
                   BOUNCE_ADDRESS=BOUNCES)
    sign(app.test_client(), name=NAME, email=EMAIL, organisation="Қазақстан еңбек конфедерациясы")
    with app.app_context():
        assert deliver_due() == 5
        ids = {d.target_key: (d.id, verp.return_path(d.id, BOUNCES)) for d in Delivery.query}
    return app, postfix, inbox, ids


def outcomes(app):
    with app.app_context():
        return {d.target_key: (d.status, d.last_error) for d in Delivery.query}


def wait_for_relayed(inbox, count, postfix):
    deadline = time.monotonic() + 20
    while len(inbox.envelopes) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(inbox.envelopes) == count, postfix.log()
    return sorted(inbox.envelopes, key=lambda envelope: envelope.rcpt_tos)


def test_the_targets_server_gets_clamors_bytes_through_postfix_unchanged(sent):
    app, postfix, inbox, ids = sent
    for envelope in wait_for_relayed(inbox, len(RELAYED), postfix):
        [target] = envelope.rcpt_tos
        assert target in RELAYED
        # The envelope sender is the letter's own VERP address, as Clamor gave it.
        assert envelope.mail_from == ids[target][1]
        received, rest = envelope.original_content.split(b"\r\n", 1)
        assert received.startswith(b"Received: from ")
        # Postfix folds its Received line; everything after it is Clamor's.
        clamors = re.sub(rb"\A(?:[ \t].*\r\n)+", b"", rest)
        assert b"Received:" not in clamors and b"Return-Path" not in clamors
        date = re.search(rb"^Date: (.*)\r$", clamors, re.MULTILINE).group(1).decode()
        with app.app_context():
            delivery = db.session.get(Delivery, ids[target][0])
            campaign = app.extensions["clamor"].campaigns[delivery.campaign]
            letter = dataclasses.replace(build_letter(delivery, campaign, app.config),
                                         date=parsedate_to_datetime(date))
        assert clamors == letter.as_bytes(), (clamors, letter.as_bytes())


def test_what_postfix_refuses_is_recorded_refused_and_the_rest_sent(sent):
    app, _postfix, _inbox, _ids = sent
    found = outcomes(app)
    status, error = found.pop(REFUSED)
    assert status == "failed"
    # Postfix answers an access map's REJECT with 554.
    assert "554 5.7.1" in error and "Mailbox closed by order of the prosecutor" in error
    status, error = found.pop(GREYLISTED)
    # Tried again later, as a 4xx asks.
    assert status == "pending" and "450 4.7.1" in error and "Greylisted" in error
    # Postfix took these: sent, whatever happens beyond it (GONE's DSN comes back later).
    assert found == {target: ("sent", "") for target in (*RELAYED, GONE)}


def test_postfixs_own_dsn_comes_back_through_the_documented_pipe_and_marks_the_letter_bounced(sent, app_config,
                                                                                              instance_path):
    app, postfix, _inbox, ids = sent
    [(argv, dsn)] = postfix.piped(1)
    # Postfix ran the documented command with the letter's own VERP address (${original_recipient}).
    clamor = Path(sys.executable).parent / "clamor"
    delivery_id, return_path = ids[GONE]
    assert argv == [str(clamor), "bounces", "read", "--recipient", return_path]
    assert b"Action: failed" in dsn and b"Status: 5.1.1" in dsn
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLAMOR_")}
    environment.update(
        CLAMOR_INSTANCE_PATH=str(instance_path), CLAMOR_SECRET_KEY=app_config["SECRET_KEY"],
        CLAMOR_SQLALCHEMY_DATABASE_URI=app_config["SQLALCHEMY_DATABASE_URI"], CLAMOR_BOUNCE_ADDRESS=BOUNCES,
        CLAMOR_BASE_URL="http://localhost", CLAMOR_DELIVERY_WORKER="external",
    )
    # What pipe(8) would have run, as root here (pipe refuses root; the capture ran as nobody).
    result = subprocess.run(argv, input=dsn, env=environment, cwd=ROOT, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == f"bounced: delivery {delivery_id}"
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "bounced"
        note = delivery.note
    assert note.startswith("DSN failed 5.1.1 smtp; 550 5.1.1 <press@akorda.kz>: Recipient address rejected")
    # The returned letter quotes the supporter in From and Reply-To: none of it is stored.
    assert EMAIL not in note and "example.org" not in note
    assert not any(word in note for word in NAME.split())
    assert {target: status for target, (status, _) in outcomes(app).items() if target != GONE} == {
        **{target: "sent" for target in RELAYED}, REFUSED: "failed", GREYLISTED: "pending"}
