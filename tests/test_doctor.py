"""`clamor doctor`: one line per check, ok or what to fix, exit 1 if any failed (issue 14, point 9).

Real servers on loopback: a DNS server (dnslib, UDP and TCP), aiosmtpd
asking for a login, pytest-httpserver standing in for Mailgun. Nothing is
resolved on the network.
"""

import base64

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner
from conftest import Inbox, unused_port
from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from app.cli import main

PASSWORD = "s3cret-Pa55word"
RECORDS = {"union.example": ["v=spf1 ip4:192.0.2.25 -all"], "_dmarc.union.example": ["v=DMARC1; p=reject"]}


class Records(BaseResolver):
    """TXT records for the names in :data:`RECORDS`; NXDOMAIN for any other name."""

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        if name not in RECORDS:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for text in RECORDS[name]:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(text), ttl=60))
        return reply


@pytest.fixture
def nameserver():
    """``127.0.0.1:<port>`` of a DNS server answering UDP and TCP."""
    port = unused_port()
    quiet = DNSLogger(prefix=False, logf=lambda line: None)
    servers = [DNSServer(Records(), address="127.0.0.1", port=port, tcp=tcp, logger=quiet) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    yield f"127.0.0.1:{port}"
    for server in servers:
        server.stop()
        server.server.server_close()


@pytest.fixture
def smtp_with_login():
    """aiosmtpd that wants AUTH (user ``clamor``, :data:`PASSWORD`), over plain text as loopback allows."""

    def authenticator(server, session, envelope, mechanism, auth_data):
        # handled=False: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=isinstance(auth_data, LoginPassword) and auth_data.login == b"clamor"
                          and auth_data.password == PASSWORD.encode(), handled=False)

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=unused_port(), authenticator=authenticator,
                            auth_require_tls=False)
    controller.start()
    controller.inbox = inbox
    yield controller
    controller.stop()


def doctor(instance_path, **settings):
    """Write instance/config.py from ``settings``, run `clamor doctor`; return (exit code, lines)."""
    config = {"SECRET_KEY": "k" * 32, "BASE_URL": "https://act.union.example",
              "SENDER_ADDRESS": "campaigns@union.example", **settings}
    (instance_path / "config.py").write_text("".join(f"{key} = {value!r}\n" for key, value in config.items()))
    result = CliRunner().invoke(main, ["doctor"], env={"CLAMOR_INSTANCE_PATH": str(instance_path)})
    return result.exit_code, result.output.splitlines()


def line(lines, start):
    [found] = [text for text in lines if start in text]
    return found


@pytest.mark.slow
def test_a_ready_deployment_has_ok_on_every_line(instance_path, nameserver, smtp_with_login):
    code, lines = doctor(instance_path, DELIVERY={"email": "smtp", "fax": "fax_email"}, SMTP_HOST="127.0.0.1",
                         SMTP_PORT=smtp_with_login.port, SMTP_USERNAME="clamor", SMTP_PASSWORD=PASSWORD,
                         DOCTOR_NAMESERVERS=[nameserver])
    assert code == 0, lines
    assert all(text.startswith("ok: ") for text in lines), lines
    assert line(lines, "backend smtp") == (f"ok: backend smtp (DELIVERY['email']): 127.0.0.1:{smtp_with_login.port} "
                                           "answered EHLO, AUTH as clamor")
    assert line(lines, "backend fax_email") == ("ok: backend fax_email (DELIVERY['fax']): not checked, "
                                                "no campaign has fax targets")
    assert line(lines, "DNS SPF") == "ok: DNS SPF of union.example: v=spf1 ip4:192.0.2.25 -all"
    assert line(lines, "DNS DMARC") == "ok: DNS DMARC of union.example: v=DMARC1; p=reject"
    assert line(lines, "bounce mailbox") == "ok: bounce mailbox: not configured (BOUNCE_IMAP_URL)"
    assert "free-erzhan-elshibayev, 5 targets" in line(lines, "campaign file")
    assert smtp_with_login.inbox.envelopes == []  # nothing was sent


@pytest.mark.slow
def test_each_problem_has_its_line_and_the_exit_code_is_1(instance_path, nameserver, smtp_with_login):
    (instance_path / "campaigns" / "broken.toml").write_text('slug = "broken"\nstatus = "open"\n')
    code, lines = doctor(instance_path, DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1",
                         SMTP_PORT=smtp_with_login.port, SMTP_USERNAME="clamor", SMTP_PASSWORD="wrong-Password",
                         DOCTOR_NAMESERVERS=[nameserver], SENDER_ADDRESS="campaigns@nowhere.example",
                         BASE_URL="http://act.union.example", SECRET_KEY=None)
    assert code == 1
    smtp = line(lines, "backend smtp")
    assert smtp.startswith("FIX: ") and "refused the login of 'clamor' (535)" in smtp and "SMTP_PASSWORD" in smtp
    assert "wrong-Password" not in "\n".join(lines)
    assert line(lines, "DNS SPF").startswith("FIX: DNS SPF of nowhere.example: no record (v=spf1 at nowhere.example)")
    assert line(lines, "DNS DMARC").startswith("FIX: DNS DMARC of nowhere.example: no record")
    assert line(lines, "SECRET_KEY").startswith("FIX: ")
    assert line(lines, "BASE_URL").startswith("FIX: ")
    assert any(text.startswith("FIX: campaign file") and "broken.toml" in text for text in lines)
    assert "ok: campaign file" in line(lines, "free-erzhan-elshibayev")  # the good file still is


@pytest.mark.slow
def test_a_resolver_that_does_not_answer_skips_the_dns_lines(instance_path, tmp_path):
    # Nothing listens on this port: the loopback refuses at once.
    code, lines = doctor(instance_path, DOCTOR_NAMESERVERS=[f"127.0.0.1:{unused_port()}"],
                         OUTBOX_DIR=str(tmp_path / "outbox"))
    assert line(lines, "DNS SPF") == "ok: DNS SPF of union.example: skipped: no resolver answered"
    assert line(lines, "DNS DMARC") == "ok: DNS DMARC of union.example: skipped: no resolver answered"
    assert line(lines, "backend outbox_files").startswith(f"ok: backend outbox_files (DELIVERY['email']): "
                                                          f"{tmp_path / 'outbox'} is writable")
    assert code == 0, lines


@pytest.mark.slow
def test_an_outbox_that_cannot_be_written_is_a_line_to_fix(instance_path, tmp_path, nameserver):
    (tmp_path / "not-a-folder").write_text("")
    code, lines = doctor(instance_path, DOCTOR_NAMESERVERS=[nameserver],
                         OUTBOX_DIR=str(tmp_path / "not-a-folder"))
    assert code == 1
    assert line(lines, "backend outbox_files").startswith("FIX: ")
    assert "OUTBOX_DIR" in line(lines, "backend outbox_files")


@pytest.mark.slow
@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, {"domain": {"name": "mg.union.example", "state": "active"}},
     "ok: backend mailgun (DELIVERY['email']): Mailgun knows the domain mg.union.example (active)"),
    (401, {"message": "Invalid private key"}, "FIX: backend mailgun (DELIVERY['email']): Mailgun refused the API key"),
])
def test_the_mailgun_domain_is_asked_for_with_the_api_key(instance_path, httpserver, nameserver, status, body,
                                                           expected):
    credentials = base64.b64encode(b"api:key-123").decode()
    httpserver.expect_request("/v3/domains/mg.union.example", method="GET",
                              headers={"Authorization": f"Basic {credentials}"}).respond_with_json(body, status=status)
    code, lines = doctor(instance_path, DELIVERY={"email": "mailgun"}, MAILGUN_DOMAIN="mg.union.example",
                         MAILGUN_API_KEY="key-123", MAILGUN_BASE_URL=httpserver.url_for("/v3"),
                         DOCTOR_NAMESERVERS=[nameserver])
    assert line(lines, "backend mailgun").startswith(expected)
    assert code == (0 if status == 200 else 1)
    assert "key-123" not in "\n".join(lines)
    assert len(httpserver.log) == 1


@pytest.mark.slow
def test_fax_email_is_checked_through_its_email_backend(instance_path, nameserver, smtp_with_login):
    from conftest import FAX_CAMPAIGN

    (instance_path / "campaigns" / "fax-test.toml").write_text(FAX_CAMPAIGN)
    code, lines = doctor(instance_path, DELIVERY={"email": "smtp", "fax": "fax_email"}, SMTP_HOST="127.0.0.1",
                         SMTP_PORT=smtp_with_login.port, SMTP_USERNAME="clamor", SMTP_PASSWORD=PASSWORD,
                         FAX_ADDRESS_TEMPLATE="{e164}@fax.union.example", DOCTOR_NAMESERVERS=[nameserver])
    assert line(lines, "backend fax_email") == (f"ok: backend fax_email (DELIVERY['fax']): through smtp: "
                                                f"127.0.0.1:{smtp_with_login.port} answered EHLO, AUTH as clamor")
    assert code == 0, lines
