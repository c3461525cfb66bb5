"""Each built-in backend against a real server: aiosmtpd, pytest-httpserver.

Every failure a server can produce is classified as the issue says: 4xx, a
dropped connection and a stall are temporary; 5xx is permanent.
"""

import io
import json
from datetime import timedelta
from email import message_from_bytes, policy

import pypdf
import pytest
from conftest import FAX_CAMPAIGN, SLUG, sign, smtp_backed_app, status_path, unused_port
from werkzeug import Response

from app import ConfigError
from app.delivery import deliver_due
from app.extensions import db
from app.models import Delivery, utcnow
from app.provider_reports import letter_id


def outcomes(app):
    with app.app_context():
        return sorted((d.status, d.last_error) for d in Delivery.query)


def make_due_now(app):
    """Pretend the backoff has passed."""
    with app.app_context():
        for delivery in Delivery.query.filter_by(status="pending"):
            delivery.next_attempt_at = utcnow()
        db.session.commit()


@pytest.mark.slow
def test_one_connection_serves_the_whole_batch(make_app, scripted_smtp):
    controller, inbox = scripted_smtp()
    app = smtp_backed_app(make_app, controller)
    sign(app.test_client())
    with app.app_context():
        assert deliver_due() == 5
    assert len(inbox.envelopes) == 5
    assert inbox.connections == 1


@pytest.mark.slow
@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
@pytest.mark.parametrize(
    "script, status, error, connections",
    [
        ({"mail_replies": ["451 4.3.0 sender greylisted"]}, "pending", "answered 451 4.3.0 sender greylisted", 1),
        ({"mail_replies": ["553 5.7.1 sender not allowed"]}, "failed", "answered 553 5.7.1 sender not allowed", 1),
        ({"rcpt_replies": ["451 4.3.0 greylisted, try later"]}, "pending", "answered 451", 1),
        ({"rcpt_replies": ["550 5.1.1 no such mailbox"]}, "failed", "answered 550 5.1.1 no such mailbox", 1),
        ({"data_replies": ["452 4.3.1 insufficient storage"]}, "pending", "answered 452", 1),
        ({"data_replies": ["554 5.7.1 rejected as spam"]}, "failed", "answered 554", 1),
        ({"data_replies": ["drop"]}, "pending", "treated as 451", 2),
        ({"data_replies": [3]}, "pending", "timed out (treated as 451)", 2),
    ],
    ids=["451-mail", "553-mail", "451-rcpt", "550-rcpt", "452-data", "554-data", "dropped", "stalled"],
)
def test_smtp_replies_are_classified(make_app, scripted_smtp, script, status, error, connections, pipelining):
    controller, inbox = scripted_smtp(pipelining=pipelining, **script)
    app = smtp_backed_app(make_app, controller, SMTP_TIMEOUT=1)
    sign(app.test_client())
    with app.app_context():
        assert deliver_due() == 5
        first = db.session.get(Delivery, 1)
        assert first.status == status
        assert error in first.last_error
        assert first.attempts == 1
        # The other four letters were not harmed by the first one's trouble.
        assert {d.status for d in Delivery.query if d.id != 1} == {"sent"}
    assert len(inbox.envelopes) == 4
    # A refusal resets the transaction and the connection goes on; a dropped or stalled one is replaced.
    assert inbox.connections == connections


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
@pytest.mark.parametrize("refused", ["mail_replies", "rcpt_replies"])
def test_421_closes_the_connection_and_the_next_letter_reconnects(make_app, scripted_smtp, pipelining, refused):
    controller, inbox = scripted_smtp(pipelining=pipelining, **{refused: ["421 4.3.2 shutting down"]})
    app = smtp_backed_app(make_app, controller)
    sign(app.test_client())
    with app.app_context():
        assert deliver_due() == 5
        first = db.session.get(Delivery, 1)
        assert (first.status, "answered 421" in first.last_error) == ("pending", True)
    assert len(inbox.envelopes) == 4
    assert inbox.connections == 2


@pytest.mark.slow
def test_message_id_is_the_same_after_a_retry(make_app, scripted_smtp):
    controller, inbox = scripted_smtp(data_replies=["451 4.7.1 try again later"])
    app = smtp_backed_app(make_app, controller, DELIVERY_RETRY_BASE=1)
    sign(app.test_client())
    with app.app_context():
        deliver_due()
        stored = db.session.get(Delivery, 1).message_id
    make_due_now(app)
    with app.app_context():
        assert deliver_due() == 1
        delivery = db.session.get(Delivery, 1)
        assert (delivery.status, delivery.attempts) == ("sent", 2)
    from email import message_from_bytes, policy

    refused = message_from_bytes(inbox.refused[0], policy=policy.default)
    accepted = [m for m in inbox.messages if m["To"].addresses[0].addr_spec == delivery.target_key]
    assert refused["Message-ID"] == accepted[0]["Message-ID"] == stored
    assert len(accepted) == 1


def test_a_letter_older_than_max_age_fails_with_its_last_error(make_app):
    app = make_app(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=unused_port())
    sign(app.test_client())
    with app.app_context():
        for delivery in Delivery.query:
            delivery.created_at = utcnow() - timedelta(days=5, minutes=1)
        db.session.commit()
        deliver_due()
        for delivery in Delivery.query:
            assert delivery.status == "failed"
            assert "refused" in delivery.last_error.lower() or "111" in delivery.last_error
            assert "DELIVERY_MAX_AGE" in delivery.last_error


@pytest.mark.slow
def test_an_unexpected_exception_is_temporary_and_logged(make_app, instance_path, caplog):
    (instance_path / "plugins").mkdir()
    (instance_path / "plugins" / "buggy.py").write_text(
        "from app import hookimpl\nfrom app.delivery import DeliveryBackend\n"
        "class Buggy(DeliveryBackend):\n    name = 'buggy'\n"
        "    def send(self, letter):\n        return {}['no such key']\n"
        "@hookimpl\ndef register_delivery_backends():\n    return [Buggy]\n"
    )
    app = make_app(DELIVERY={"email": "buggy"})
    sign(app.test_client())
    with app.app_context():
        deliver_due()
        assert {(d.status, d.last_error) for d in Delivery.query} == {("pending", "KeyError: 'no such key'")}
    assert "unexpected error, will retry" in caplog.text
    assert "Traceback" in caplog.text


# --- mailgun ---------------------------------------------------------------


@pytest.fixture
def mailgun_app(make_app, httpserver):
    def build(**overrides):
        return make_app(
            DELIVERY={"email": "mailgun"}, MAILGUN_DOMAIN="mg.clamor.test", MAILGUN_API_KEY="key-123",
            MAILGUN_BASE_URL=httpserver.url_for("/v3"), DELIVERY_RETRY_BASE=1, **overrides,
        )

    return build


class MailgunStub:
    """Records each request; answers from ``script`` (status, headers, body), then 200."""

    def __init__(self, script=()):
        self.script = list(script)
        self.requests = []
        #: The MIME bytes of each request's letter.
        self.letters = []
        self.accepted = []

    def __call__(self, request):
        self.requests.append(request)
        self.letters.append(request.files["message"].read() if "message" in request.files else b"")
        if self.script:
            status, headers, body = self.script.pop(0)
            return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")
        self.accepted.append(message_from_bytes(self.letters[-1])["Message-ID"])
        reply = {"id": f"<mg-{len(self.accepted)}@mg.clamor.test>", "message": "Queued. Thank you."}
        return Response(json.dumps(reply), content_type="application/json")


@pytest.mark.slow
def test_mailgun_request_has_the_exact_fields_and_auth(mailgun_app, httpserver):
    stub = MailgunStub()
    httpserver.expect_request("/v3/mg.clamor.test/messages.mime", method="POST").respond_with_handler(stub)
    app = mailgun_app()
    sign(app.test_client(), name="Anna Example", email="anna@example.org")
    with app.app_context():
        assert deliver_due() == 5
        deliveries = {d.target_key: d for d in Delivery.query}
        assert {d.status for d in deliveries.values()} == {"sent"}
        assert sorted(d.provider_id for d in deliveries.values())[0] == "<mg-1@mg.clamor.test>"
    request = stub.requests[0]
    assert request.authorization.type == "basic"
    assert (request.authorization.username, request.authorization.password) == ("api", "key-123")
    form = request.form.to_dict(flat=False)
    target = form["to"][0]
    # The envelope recipient, the tag and the letter's opaque variable; the
    # letter is the MIME bytes Clamor wrote.
    variable = form.pop("v:clamor-letter")[0]
    assert form == {"to": [target], "o:tag": [SLUG]}
    assert list(request.files) == ["message"]
    stub_bytes = stub.letters[0]
    raw = message_from_bytes(stub_bytes, policy=policy.default)
    assert raw["From"].addresses[0].display_name == "Anna Example via Libérez Erzhan Elshibayev"
    assert raw["From"].addresses[0].addr_spec == "campaigns@clamor.test"
    assert str(raw["Reply-To"]) == "Anna Example <anna@example.org>"
    assert raw["To"].addresses[0].addr_spec == target
    assert raw["Message-ID"] == deliveries[target].message_id
    assert raw["Subject"] == "Libérez Erzhan Elshibayev"
    assert raw.get_content().startswith("Free Erzhan Elshibayev now.")
    assert stub_bytes.isascii() and b"\r\n" in stub_bytes
    # The variable names the letter, and nothing a supporter typed is in it.
    with app.app_context():
        assert letter_id(variable) == deliveries[target].id
    assert not any(word in variable.lower() for word in ("anna", "example", "erzhan"))


@pytest.mark.slow
def test_mailgun_429_then_200_delivers_once_honouring_retry_after(mailgun_app, httpserver):
    stub = MailgunStub([(429, {"Retry-After": "120"}, {"message": "Too many requests"})])
    httpserver.expect_request("/v3/mg.clamor.test/messages.mime", method="POST").respond_with_handler(stub)
    app = mailgun_app()
    sign(app.test_client())
    with app.app_context():
        assert deliver_due() == 5
        waiting = Delivery.query.filter_by(status="pending").one()
        assert waiting.next_attempt_at >= utcnow() + timedelta(seconds=110)
        assert "429" in waiting.last_error
    make_due_now(app)
    with app.app_context():
        assert deliver_due() == 1
        assert {d.status for d in Delivery.query} == {"sent"}
        message_ids = sorted(d.message_id for d in Delivery.query)
    assert len(stub.requests) == 6
    assert sorted(stub.accepted) == message_ids  # each letter accepted exactly once


@pytest.mark.slow
def test_mailgun_400_fails_with_mailguns_message_shown_by_clamor_deliveries(mailgun_app, httpserver):
    bad = (400, {}, {"message": "'to' parameter is not a valid address. please check documentation"})
    stub = MailgunStub([bad] * 5)
    httpserver.expect_request("/v3/mg.clamor.test/messages.mime", method="POST").respond_with_handler(stub)
    app = mailgun_app()
    sign(app.test_client())
    with app.app_context():
        deliver_due()
        assert {d.status for d in Delivery.query} == {"failed"}
    result = app.test_cli_runner().invoke(args=["deliveries"])
    assert result.exit_code == 0, result.output
    assert "failed" in result.output
    assert "'to' parameter is not a valid address" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("status, outcome", [(401, "failed"), (403, "failed"), (420, "pending"), (503, "pending")])
def test_mailgun_status_codes(mailgun_app, httpserver, status, outcome):
    stub = MailgunStub([(status, {}, {"message": f"status {status}"})])
    httpserver.expect_request("/v3/mg.clamor.test/messages.mime", method="POST").respond_with_handler(stub)
    app = mailgun_app()
    sign(app.test_client())
    with app.app_context():
        deliver_due()
        first = db.session.get(Delivery, 1)
    assert (first.status, first.last_error) == (outcome, f"Mailgun answered {status}: status {status}")


@pytest.mark.slow
def test_mailgun_404_is_temporary_three_tries_then_permanent(mailgun_app, httpserver):
    stub = MailgunStub([(404, {}, {"message": "Domain not found: mg.clamor.test"})] * 3)
    httpserver.expect_request("/v3/mg.clamor.test/messages.mime", method="POST").respond_with_handler(stub)
    app = mailgun_app()
    sign(app.test_client())
    statuses = []
    for _ in range(3):
        with app.app_context():
            for delivery in Delivery.query:  # only the first letter is due
                delivery.next_attempt_at = utcnow() + timedelta(days=delivery.id - 1)
            db.session.commit()
            deliver_due()
            statuses.append(db.session.get(Delivery, 1).status)
    assert statuses == ["pending", "pending", "failed"]
    assert len(stub.requests) == 3


@pytest.mark.slow
def test_mailgun_timeout_is_temporary(mailgun_app, httpserver):
    import time

    httpserver.expect_request("/v3/mg.clamor.test/messages.mime").respond_with_handler(
        lambda r: time.sleep(2) or Response("{}"))
    app = mailgun_app(MAILGUN_TIMEOUT=0.5)
    sign(app.test_client())
    with app.app_context():
        deliver_due(limit=1)
        first = db.session.get(Delivery, 1)
        assert first.status == "pending"
        assert "Timeout" in first.last_error


def test_mailgun_region_picks_the_api_host():
    from plugins.mailgun import MailgunBackend

    base = {"MAILGUN_DOMAIN": "mg.example.org", "MAILGUN_API_KEY": "k", "MAILGUN_BASE_URL": None, "MAILGUN_TIMEOUT": 5}
    assert MailgunBackend({**base, "MAILGUN_REGION": "eu"}).url == "https://api.eu.mailgun.net/v3/mg.example.org/messages.mime"
    assert MailgunBackend({**base, "MAILGUN_REGION": "us"}).url == "https://api.mailgun.net/v3/mg.example.org/messages.mime"


# --- fax_email -------------------------------------------------------------


KAZAKH_LETTER = (
    "Құрметті Қасым-Жомарт Кемелұлы!\n\n"
    "Біз, Әлемнің кәсіподақ мүшелері, Ержан Елшібаевты босатуды талап етеміз. "
    "Қ Ә Ғ Ү Ұ Һ Ң Ө — бұл әріптер де дұрыс басылуы тиіс.\n\n"
    "Құрметпен"
)


@pytest.mark.slow
def test_a_kazakh_letter_goes_by_fax_email_as_a_pdf(make_app, instance_path, smtp_server):
    (instance_path / "campaigns" / "fax-test.toml").write_text(FAX_CAMPAIGN)
    app = make_app(
        DELIVERY={"email": "outbox_files", "fax": "fax_email"}, FAX_VIA="smtp",
        SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port,
        FAX_ADDRESS_TEMPLATE="{e164}@fax.tc", FAX_SENDER="fax@clamor.test", FAX_BODY_PREFIX="{nocoverpage}",
        FAX_SUBJECT_TEMPLATE="Fax: {subject}",
    )
    client = app.test_client()
    response = sign(client, lang="kk", slug="fax-test", name="Айгүл Сәрсенова", country="KZ",
                    email="aigul@example.kz", organisation="", message=KAZAKH_LETTER)
    assert response.status_code == 303
    with app.app_context():
        assert deliver_due() == 1
        delivery = Delivery.query.one()
        assert (delivery.status, delivery.channel, delivery.backend) == ("sent", "fax", "fax_email")
        # The receipt's note is not an error: it is in note, last_error stays empty.
        assert (delivery.note, delivery.last_error) == ("queued for faxing by +77172745631@fax.tc", "")
    # The supporter's status page says the gateway queued it, not that it was faxed.
    status_page = client.get(status_path(app, "aigul@example.kz")).get_data(as_text=True)
    assert "факс кезегінде" in status_page and ">жіберілді<" not in status_page

    (envelope,), (message,) = smtp_server.inbox.envelopes, smtp_server.inbox.messages
    assert envelope.rcpt_tos == ["+77172745631@fax.tc"]
    assert envelope.mail_from == "fax@clamor.test"
    # The gateway's reports go to the fax sender, and it never sees the supporter's address in a header.
    assert message["Reply-To"] == "fax@clamor.test"
    assert "aigul" not in "".join(f"{k}: {v}" for k, v in message.items())
    assert message["Subject"] == "Fax: Ержан Елшібаевты босатыңыз"
    assert message.get_body(("plain",)).get_content().strip() == "{nocoverpage}"
    (pdf_part,) = [part for part in message.iter_attachments()]
    assert pdf_part.get_content_type() == "application/pdf"
    page = pypdf.PdfReader(io.BytesIO(pdf_part.get_content())).pages[0]
    assert [round(float(x)) for x in page.mediabox[2:]] == [595, 842]  # A4 in points
    # The signature block without the supporter's email address: a fax is printed and filed.
    expected = ("Ақорда баспасөз қызметі\nЕржан Елшібаевты босатыңыз\n\n" + KAZAKH_LETTER
                + "\n\nАйгүл Сәрсенова\nҚазақстан\n")
    assert page.extract_text().split() == expected.split()
    assert "aigul" not in page.extract_text()


@pytest.mark.slow
def test_a_fax_written_on_the_russian_page_is_russian_throughout(make_app, instance_path, smtp_server):
    # Before: the French subject and "Russie" around a Russian body, on the page and in Subject.
    campaign = (FAX_CAMPAIGN.replace('default_language = "kk"', 'default_language = "fr"')
                .replace('languages = ["kk"]', 'languages = ["fr", "ru", "kk"]')
                + '[text.fr]\ntitle = "t"\nshort_name = "s"\nbody = ["p"]\nsubject = "Libérez Erzhan"\n'
                  'letter = "Monsieur le Président"\n'
                + '[text.ru]\ntitle = "т"\nshort_name = "с"\nbody = ["п"]\nsubject = "Освободите Ержана"\n'
                  'letter = "Господин Президент"\n')
    (instance_path / "campaigns" / "fax-test.toml").write_text(campaign)
    app = make_app(DELIVERY={"email": "outbox_files", "fax": "fax_email"}, FAX_VIA="smtp",
                   SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port, FAX_ADDRESS_TEMPLATE="{e164}@fax.tc",
                   FAX_SENDER="fax@clamor.test", FAX_SUBJECT_TEMPLATE="Fax: {subject}")
    response = sign(app.test_client(), lang="ru", slug="fax-test", name="Анна", country="RU",
                    message="Свободу Ержану!")
    assert response.status_code == 303
    with app.app_context():
        assert deliver_due() == 1
    (message,) = smtp_server.inbox.messages
    assert message["Subject"] == "Fax: Освободите Ержана"
    (pdf_part,) = list(message.iter_attachments())
    text = pypdf.PdfReader(io.BytesIO(pdf_part.get_content())).pages[0].extract_text()
    assert "Освободите Ержана" in text and "Россия" in text
    assert "Libérez" not in text and "Russie" not in text


@pytest.mark.slow
def test_fax_reply_to_sends_the_gateway_reports_elsewhere(make_app, instance_path, smtp_server):
    (instance_path / "campaigns" / "fax-test.toml").write_text(FAX_CAMPAIGN)
    app = make_app(
        DELIVERY={"email": "smtp", "fax": "fax_email"}, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port,
        FAX_ADDRESS_TEMPLATE="{e164}@fax.tc", FAX_SENDER="fax@clamor.test", FAX_REPLY_TO="fax-reports@clamor.test",
    )
    sign(app.test_client(), lang="kk", slug="fax-test", email="aigul@example.kz")
    with app.app_context():
        assert deliver_due() == 1
    (message,) = smtp_server.inbox.messages
    assert message["From"].addresses[0].addr_spec == "fax@clamor.test"
    assert message["Reply-To"] == "fax-reports@clamor.test"


def test_fax_targets_without_a_gateway_stop_start_up(make_app, instance_path):
    """The default config has no FAX_ADDRESS_TEMPLATE: a campaign with fax targets stops start-up, naming it."""
    (instance_path / "campaigns" / "fax-test.toml").write_text(FAX_CAMPAIGN)
    with pytest.raises(ConfigError, match="FAX_ADDRESS_TEMPLATE is not set") as caught:
        make_app()
    assert "fax-test.toml" in str(caught.value)
    make_app(FAX_ADDRESS_TEMPLATE="{e164}@fax.tc")  # with a gateway it starts


@pytest.mark.parametrize(
    "number, template, address",
    [
        ("+7 7172 74-56-31", "{e164}@fax.tc", "+77172745631@fax.tc"),
        ("+44 (0)20 7946 0018", "{digits}@sinchfax.com", "442079460018@sinchfax.com"),
        ("00 1 (212) 555-0100", "{digits}@efaxsend.com", "12125550100@efaxsend.com"),
        ("+33 1 23 45 67 89", "{national}@fax.example", "123456789@fax.example"),
        ("+998 71 123 45 67", "{national}@fax.example", "711234567@fax.example"),
    ],
)
def test_fax_numbers_are_normalised(number, template, address):
    from plugins.fax_email import parse_fax_number

    assert parse_fax_number(number).format(template) == address


@pytest.mark.parametrize("number", ["8 7172 74 56 31", "+7 12", "+7 7172 ext 5"])
def test_fax_numbers_without_country_code_are_refused(number):
    from plugins.fax_email import FaxNumberError, parse_fax_number

    with pytest.raises(FaxNumberError):
        parse_fax_number(number)


@pytest.mark.slow
def test_a_slow_batch_stops_before_its_lease_ends(make_app, scripted_smtp):
    """Past the lease another worker may claim the batch's letters: the rest wait, none is sent twice."""
    controller, inbox = scripted_smtp(data_replies=[1.2])  # the first letter takes 1.2 s
    app = smtp_backed_app(make_app, controller, SMTP_TIMEOUT=5, DELIVERY_LEASE_SECONDS=1)
    sign(app.test_client())
    with app.app_context():
        assert deliver_due() == 5
        assert sorted(d.status for d in Delivery.query) == ["sending"] * 4 + ["sent"]
    assert len(inbox.envelopes) == 1
    with app.app_context():
        # The lease has run out: the four are due again and go out once each.
        while deliver_due():
            pass
        assert {d.status for d in Delivery.query} == {"sent"}
    assert sorted(e.rcpt_tos[0] for e in inbox.envelopes) == sorted(
        t.key for t in app.extensions["clamor"].campaigns[SLUG].targets)
