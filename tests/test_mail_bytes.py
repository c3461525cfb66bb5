"""Clamor writes every letter's bytes itself: what arrives means exactly what was typed, nothing more.

Names that once added headers, replaced the body or turned From into two
mailboxes (RFC 2047 encoded-words decoded while folding, CVE-2024-6923) are
signed through the form and delivered by the real stack; the bytes written
to the outbox and those a real aiosmtpd receives are read back with two
decoders: ``policy.default`` and ``decode_header`` + ``make_header`` (on the
name ``getaddresses`` finds).

On CPython with gh-128110 (3.11.7 here), ``policy.default`` reads the
whitespace between two adjacent encoded-words in an address header as a
space, though RFC 2047 §6.2 says it is not part of the text: a name long
enough for two encoded-words then reads with one space more at each such
gap. :func:`rfc2047_reading` drops exactly that whitespace before handing the
value to ``policy.default``, and only on such an interpreter; everything
about structure (how many mailboxes, which addresses, which headers) is
checked on the bytes as received.
"""

import collections
import dataclasses
import io
import re
import subprocess
from datetime import UTC, datetime
from email import message_from_bytes, message_from_string, policy
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parsedate_to_datetime

import pypdf
import pytest
from conftest import FAX_CAMPAIGN, SLUG, forget_during_a_slow_batch, sign, smtp_backed_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import ConfigError
from app.delivery import Letter, PermanentFailure, deliver_due, new_message_id, one_line
from app.models import Delivery

SENDER = "campaigns@clamor.test"
CRLF_PAYLOAD = "=?utf-8?q?Eve=0D=0AX-Injected=3A_yes=0D=0A=0D=0AReplaced_body?="
COMMA_PAYLOAD = "=?utf-8?q?President_=3Cpresident=40gov.kz=3E=2C?="
BCC_PAYLOAD = "=?utf-8?q?Bcc=3A_President_=3Cpresident=40gov.kz=3E=2C?="
SPECIALS = 'Anna "Nurse" Ivanova, <Ward 3>; C:\\union'
#: The same payload with a Cyrillic word in front: before, the email package
#: decoded the encoded-word in such a name and wrote it out raw.
MIXED_PAYLOAD = "Анна " + COMMA_PAYLOAD
NAMES = [CRLF_PAYLOAD, COMMA_PAYLOAD, BCC_PAYLOAD, SPECIALS, MIXED_PAYLOAD]
NAME_IDS = ["crlf-encoded-word", "comma-encoded-word", "bcc-group", "specials", "cyrillic-and-encoded-word"]

#: The headers a letter has, and nothing else.
LETTER_HEADERS = {"from", "reply-to", "to", "subject", "date", "message-id", "mime-version", "content-type",
                  "content-transfer-encoding", "content-language"}
ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _joins_encoded_words_with_a_space():
    """True where policy.default has gh-128110 (reads the gap between two encoded-words as a space)."""
    message = message_from_string("From: =?utf-8?q?a?= =?utf-8?q?b?= <x@y.test>\n\n", policy=policy.default)
    return message["From"].addresses[0].display_name == "a b"


GH_128110 = _joins_encoded_words_with_a_space()


def rfc2047_reading(field, raw):
    """``policy.default``'s header object for ``raw`` (a field value), read as RFC 2047 §6.2 says.

    Only where the interpreter has gh-128110: the whitespace between two
    tokens that are both whole encoded-words is dropped first.
    """
    value = " ".join(raw.split())
    if GH_128110:
        tokens = value.split(" ")
        value = tokens[0]
        for before, token in zip(tokens, tokens[1:], strict=False):
            adjacent = ENCODED_WORD.fullmatch(before) and ENCODED_WORD.fullmatch(token)
            value += token if adjacent else " " + token
    return policy.default.header_factory(field, value)


def second_decoder(raw):
    """The one mailbox in ``raw`` as ``getaddresses`` finds it, its name decoded by ``decode_header``."""
    (name, address), = getaddresses([raw])
    return str(make_header(decode_header(name))), address


class Received:
    """One letter as bytes, read by both decoders."""

    def __init__(self, data):
        self.data = data
        head, _, _ = data.partition(b"\r\n\r\n")
        self.head = head.decode("ascii")
        self.raw = message_from_bytes(data, policy=policy.compat32)  # field values as written
        self.message = message_from_bytes(data, policy=policy.default)

    def mailbox(self, field):
        """(display name, address) of the one mailbox in ``field``, both decoders agreeing."""
        raw = self.raw[field]
        strict = self.message[field].addresses
        assert len(strict) == 1, (field, strict)
        assert len(getaddresses([raw])) == 1, (field, raw)
        name, address = second_decoder(raw)
        (rfc,) = rfc2047_reading(field, raw).addresses
        assert address == strict[0].addr_spec == rfc.addr_spec
        assert rfc.display_name == name, (field, raw)
        return name, address

    def body(self):
        return self.message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def check_form(received):
    """What every letter must be, whatever was typed: CRLF only, short lines, short encoded-words."""
    assert received.data.count(b"\n") == received.data.count(b"\r\n")
    assert received.data.isascii()
    lines = received.head.split("\r\n")
    assert all(len(line) <= 78 for line in lines), [line for line in lines if len(line) > 78]
    words = ENCODED_WORD.findall(received.head)
    assert all(len(word) <= 75 for word in words), [word for word in words if len(word) > 75]


def no_word_split(raw, typed):
    """True when no two adjacent encoded-words in ``raw`` split a word of ``typed`` between them."""
    tokens = " ".join(raw.split()).split(" ")
    for before, after in zip(tokens, tokens[1:], strict=False):
        if ENCODED_WORD.fullmatch(before) and ENCODED_WORD.fullmatch(after):
            first = str(make_header(decode_header(before)))
            second = str(make_header(decode_header(after)))
            if not (first.endswith(" ") or second.startswith(" ")):
                return False
    return True


def outbox_letters(instance_path):
    return [Received(path.read_bytes()) for path in sorted((instance_path / "outbox").glob("*.eml"))]


def smtp_letters(controller):
    return [Received(envelope.original_content) for envelope in controller.inbox.envelopes]


@pytest.fixture(params=["outbox_files", "smtp"])
def delivered(request, make_app, instance_path, smtp_server):
    """Sign with ``name`` through the form and deliver; returns (app, letters as bytes) for the backend."""

    def deliver(**values):
        if request.param == "smtp":
            app = smtp_backed_app(make_app, smtp_server)
        else:
            app = make_app()
        response = sign(app.test_client(), **values)
        assert response.status_code == 303
        with app.app_context():
            assert deliver_due() == 5
            assert {d.status for d in Delivery.query} == {"sent"}
        if request.param == "smtp":
            for envelope in smtp_server.inbox.envelopes:
                assert envelope.mail_from == SENDER
                assert len(envelope.rcpt_tos) == 1
            return app, smtp_letters(smtp_server)
        return app, outbox_letters(instance_path)

    deliver.backend = request.param
    return deliver


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES, ids=NAME_IDS)
def test_a_name_is_data_in_every_header_and_adds_nothing(delivered, name):
    message = "Libérez Erzhan Elshibayev.\n\nСвободу Ержану!"
    app, letters = delivered(name=name, email="eve@example.org", organisation="", country="FR", message=message)
    campaign = app.extensions["clamor"].campaigns[SLUG]
    targets = {t.key: t.name for t in campaign.targets}
    assert len(letters) == 5
    seen = set()
    for letter in letters:
        check_form(letter)
        assert {key.lower() for key in letter.message.keys()} == LETTER_HEADERS
        assert not letter.message.defects
        assert letter.mailbox("From") == (f"{name} via Libérez Erzhan Elshibayev", SENDER)
        assert letter.mailbox("Reply-To") == (name, "eve@example.org")
        to_name, to_address = letter.mailbox("To")
        assert to_name == targets[to_address]
        seen.add(to_address)
        assert letter.message["Subject"] == "Libérez Erzhan Elshibayev"
        assert letter.message.get_content_type() == "text/plain"
        assert letter.message.get_content_charset() == "utf-8"
        assert letter.message["Content-Language"] == "fr"
        assert letter.body() == f"{message}\n\n{name}\nFrance\neve@example.org\n"
    assert seen == set(targets)


#: Perl's Encode (Debian's perl package): an RFC 2047 decoder written apart from Python's email package.
PERL_DECODER = r"""
use Encode qw(decode);
binmode STDIN, ":raw";
binmode STDOUT, ":encoding(UTF-8)";
while (my $value = <STDIN>) { chomp $value; print decode("MIME-Header", $value), "\n"; }
"""


def perl_decoded(values):
    """Each of ``values`` (header field values as written, folded) as Perl's Encode decodes it."""
    unfolded = [re.sub(r"\r\n(?=[ \t])", "", value) for value in values]
    assert all("\n" not in value for value in unfolded)
    done = subprocess.run(["perl", "-e", PERL_DECODER], input="\n".join(unfolded) + "\n", capture_output=True,
                          text=True, encoding="utf-8", check=True, timeout=30)
    return done.stdout.split("\n")[:-1]


@pytest.mark.slow
@pytest.mark.parametrize(("lang", "name"), [
    ("kk", "Әлия Нұрланқызы Сейітқали-Бекмұхамбетова"),
    ("ru", "Анна " + COMMA_PAYLOAD),
    ("fr", "Marie-Hélène d’Aubigné-Lefèvre " + CRLF_PAYLOAD),
], ids=["kazakh", "russian-and-encoded-word", "french-and-crlf-encoded-word"])
def test_perl_decodes_every_header_to_what_was_typed(delivered, lang, name):
    """A decoder that is not Python's reads the names, the targets and the subject exactly, spaces and all.

    What a supporter typed that looks like an encoded-word comes out as the
    text they typed: decoded once, never into a header or a line of its own.
    """
    app, letters = delivered(lang=lang, name=name, email="eve@example.org")
    campaign = app.extensions["clamor"].campaigns[SLUG]
    text = campaign.text(lang)
    assert len(letters) == 5
    for letter in letters:
        fields = ["From", "Reply-To", "To", "Subject"]
        from_, reply_to, to, subject = perl_decoded([letter.raw[field] for field in fields])
        target = campaign.target(letter.mailbox("To")[1])
        assert to == f"{target.name} <{target.key}>"
        assert reply_to == f"{name} <eve@example.org>"
        # "Anna via the campaign", in the page's language: as Python's two readings have it.
        assert from_ == f"{letter.mailbox('From')[0]} <{SENDER}>" and from_.startswith(f"{name} ")
        assert text.short_name in from_
        assert subject == text.subject


@pytest.mark.slow
def test_long_cyrillic_target_names_are_split_between_words_only(delivered):
    app, letters = delivered()
    campaign = app.extensions["clamor"].campaigns[SLUG]
    targets = {t.key: t.name for t in campaign.targets}
    assert max(len(name) for name in targets.values()) > 50  # each needs several encoded-words
    for letter in letters:
        check_form(letter)
        raw = letter.raw["To"]
        name, address = letter.mailbox("To")
        assert name == targets[address]
        assert no_word_split(raw, name), raw
        # Even policy.default as it is here shows no space inside a word ("пре сс-служба").
        assert letter.message["To"].addresses[0].display_name.split() == name.split()


@pytest.mark.slow
def test_an_outbox_file_is_exactly_what_smtp_sends(make_app, instance_path, smtp_server, tmp_path):
    outbox = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'outbox.sqlite3'}")
    smtp = smtp_backed_app(make_app, smtp_server)
    for app in (outbox, smtp):
        sign(app.test_client(), name=SPECIALS)
        with app.app_context():
            deliver_due()

    def strip_varying(data):
        return re.sub(rb"(Date|Message-ID): [^\r]*", rb"\1: x", data)

    files = sorted(strip_varying(r.data) for r in outbox_letters(instance_path))
    received = sorted(strip_varying(r.data) for r in smtp_letters(smtp_server))
    assert files == received


def test_message_ids_are_random_and_name_only_the_sender_domain(make_app):
    app = make_app()
    sign(app.test_client())
    with app.app_context():
        ids = [d.message_id for d in Delivery.query]
    assert len(set(ids)) == 5
    for message_id in ids:
        assert re.fullmatch(r"<[0-9a-f]{32}@clamor\.test>", message_id), message_id
    assert re.fullmatch(r"<[0-9a-f]{32}@xn--e1afmkfd\.xn--p1ai>", new_message_id("c@пример.рф"))
    assert re.fullmatch(r"<[0-9a-f]{32}@localhost>", new_message_id("campaigns@"))


@pytest.mark.slow
def test_an_idn_reply_to_is_written_in_punycode(delivered):
    _, letters = delivered(email="anna@пример.рф")
    for letter in letters:
        assert letter.mailbox("Reply-To") == ("Anna Example", "anna@xn--e1afmkfd.xn--p1ai")


# --- a letter written directly ---------------------------------------------------------------------

def make_letter(**changes):
    values = dict(
        delivery_id=7, campaign=SLUG, language="fr", channel="email",
        from_name="Anna Example via Libérez Erzhan Elshibayev", from_address=SENDER,
        reply_to_name="Anna Example", reply_to_address="anna@example.org",
        to_name="Генеральная прокуратура Республики Казахстан, пресс-служба", to_address="press@prokuror.kz",
        subject="Libérez Erzhan Elshibayev", body="Libérez-le.\n\nAnna Example\n",
        message_id="<0123456789abcdef0123456789abcdef@clamor.test>", date=datetime(2025, 3, 1, 12, 30, 5),
    )
    values.update(changes)
    return Letter(**values)


def reference_email(letter):
    """What EmailMessage means for ``letter``: the in-memory message built from structured objects."""
    msg = EmailMessage()
    msg["From"] = Address(display_name=letter.from_name, addr_spec=letter.from_address)
    msg["Reply-To"] = Address(display_name=letter.reply_to_name, addr_spec=letter.reply_to_address)
    msg["To"] = Address(display_name=letter.to_name, addr_spec=letter.to_address)
    msg["Subject"] = letter.subject
    msg["Date"] = format_datetime(letter.date.replace(tzinfo=UTC))
    msg["Message-ID"] = letter.message_id
    msg.set_content(letter.body)
    msg["Content-Language"] = letter.language
    for filename, mime_type, data in letter.attachments:
        maintype, _, subtype = mime_type.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


def assert_same_meaning(letter):
    """``letter.as_bytes()`` means what the reference EmailMessage means: addresses, headers, body, attachments."""
    ours = Received(letter.as_bytes())
    check_form(ours)
    reference = reference_email(letter)
    for field in ("From", "Reply-To", "To"):
        (address,) = reference[field].addresses
        assert ours.mailbox(field) == (address.display_name, address.addr_spec)
    assert ours.message["Subject"] == letter.subject
    assert str(make_header(decode_header(ours.raw["Subject"]))) == letter.subject
    if "=?" not in letter.subject:
        # Given a str with an encoded-word, EmailMessage decodes it (the very thing fixed here).
        assert reference["Subject"] == letter.subject
    assert parsedate_to_datetime(ours.message["Date"]) == parsedate_to_datetime(reference["Date"])
    assert ours.message["Message-ID"] == reference["Message-ID"]
    assert ours.message["Content-Language"] == letter.language
    assert ours.message.get_content_type() == reference.get_content_type()
    assert ours.body() == reference.get_body(("plain",)).get_content().replace("\r\n", "\n")
    theirs = [(p.get_filename(), p.get_content_type(), p.get_content()) for p in reference.iter_attachments()]
    mine = [(p.get_filename(), p.get_content_type(), p.get_content()) for p in ours.message.iter_attachments()]
    assert mine == theirs
    expected = LETTER_HEADERS if not letter.attachments else LETTER_HEADERS - {"content-transfer-encoding"}
    assert {key.lower() for key in ours.message.keys()} == expected
    # as_email() is the same letter parsed back, and writes back the same bytes
    # (but for the multipart boundary, which is new each time).
    parsed = letter.as_email()
    again = parsed.as_bytes()
    if letter.attachments:
        again = again.replace(parsed.get_boundary().encode(), ours.message.get_boundary().encode())
    assert again == ours.data
    return ours


#: Text as a supporter could type it into a one-line field; build_letter passes names through one_line.
typed = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=120).map(one_line)
words = st.lists(st.sampled_from(["Анна", "=?utf-8?q?", "?=", "Bcc:", "<x@y.kz>", ",", ";", '"', "\\", "Lib\u00e9rez",
                                  "Қазақстан", "пресс-служба", "a" * 70, "(копия)", "O'Brien", "_", "=3D", "😀"]),
                 max_size=12).map(" ".join)


@pytest.mark.slow
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.one_of(typed, words), organisation=typed, subject=st.one_of(typed, words),
       target=st.one_of(typed, words))
def test_any_name_means_what_emailmessage_means(name, organisation, subject, target):
    letter = make_letter(from_name=f"{name} via Libérez Erzhan Elshibayev", reply_to_name=name, to_name=target,
                         subject=subject, body=f"Libérez-le.\n\n{name}\n{organisation}\n")
    assert_same_meaning(letter)


@pytest.mark.parametrize("name", NAMES + ["Генеральная прокуратура Республики Казахстан, пресс-служба", "Ы" * 90],
                         ids=NAME_IDS + ["target", "one-long-word"])
def test_the_payloads_mean_what_emailmessage_means(name):
    assert_same_meaning(make_letter(from_name=name, reply_to_name=name, to_name=name, subject=name))


def test_a_letter_with_an_attachment_is_multipart_mixed_with_the_pdf_in_base64():
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40
    long_name = "письмо Ержану Елшібаевқа бостандық, Ақорда баспасөз қызметі 7.pdf"
    letter = make_letter(attachments=(("letter-7.pdf", "application/pdf", pdf),
                                      (long_name, "application/pdf", b"%PDF-1.4 second\n")))
    ours = assert_same_meaning(letter)
    assert ours.message.get_content_type() == "multipart/mixed"
    parts = list(ours.message.iter_attachments())
    assert [p["Content-Transfer-Encoding"] for p in parts] == ["base64", "base64"]
    assert parts[0].get_content() == pdf
    assert parts[1].get_filename() == long_name
    # Every line, the parts' headers and the base64 included.
    assert max(len(line) for line in ours.data.split(b"\r\n")) <= 78
    # A fresh boundary each time, so no text can guess it.
    assert ours.message.get_boundary() != Received(letter.as_bytes()).message.get_boundary()


@pytest.mark.parametrize("changes", [
    {"reply_to_address": "анна@example.org"},
    {"reply_to_address": "anna@example.org\r\nBcc: x@y.kz"},
    {"to_address": "press@prokuror.kz>, <x@y.kz"},
    {"to_address": "press@prokuror\x00.kz"},
    {"from_name": "Anna\r\nBcc: x@y.kz"},
    {"subject": "Free him\nBcc: x@y.kz"},
    {"message_id": "<a@b>\r\nBcc: x@y.kz"},
], ids=["non-ascii-local-part", "crlf-address", "two-addresses", "nul", "crlf-name", "lf-subject", "crlf-message-id"])
def test_a_letter_that_cannot_be_written_is_a_permanent_failure(changes):
    letter = make_letter(**changes)
    with pytest.raises(PermanentFailure, match="cannot be written"):
        letter.as_bytes()
    with pytest.raises(PermanentFailure):
        letter.as_email()


def test_the_encoders_by_example():
    from app.mailbytes import encode_display_name, encode_unstructured, format_address

    assert encode_display_name("Anna Example") == "Anna Example"
    assert encode_display_name("") == ""
    assert format_address("", "press@mfa.kz") == "press@mfa.kz"
    assert format_address("Анна", "a@пример.рф") == "=?utf-8?b?0JDQvdC90LA=?= <a@xn--e1afmkfd.xn--p1ai>"
    # An encoded-word typed by someone is written as an encoded-word of its text.
    assert COMMA_PAYLOAD not in encode_display_name(COMMA_PAYLOAD)
    assert str(make_header(decode_header(encode_display_name(COMMA_PAYLOAD)))) == COMMA_PAYLOAD
    # A word too long for one encoded-word (75 characters) is cut after its hyphen, not mid-name.
    surname = "Сейітқали-Бекмұхамбетова"
    words = re.findall(r"=\?utf-8\?[bq]\?[^?]*\?=", encode_display_name(f"Әлия {surname}"))
    assert [decode_header(word)[0][0].decode() for word in words] == ["Әлия ", "Сейітқали-", "Бекмұхамбетова"]
    assert encode_unstructured("Fax: Free him /bn") == "Fax: Free him /bn"
    assert str(make_header(decode_header(encode_unstructured("Fax: Ержан /bn")))) == "Fax: Ержан /bn"


# --- the fax channel ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_faxed_pdf_and_its_email_carry_no_supporter_address(make_app, instance_path, smtp_server):
    (instance_path / "campaigns" / "fax-test.toml").write_text(FAX_CAMPAIGN)
    app = make_app(DELIVERY={"email": "smtp", "fax": "fax_email"}, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port,
                   FAX_ADDRESS_TEMPLATE="{e164}@fax.tc", FAX_SENDER="fax@clamor.test")
    sign(app.test_client(), lang="kk", slug="fax-test", name="Айгүл Сәрсенова", email="aigul.s@example.kz",
         organisation="Кәсіподақ", country="KZ", message="Құрметті Президент!")
    with app.app_context():
        assert deliver_due() == 1
        assert Delivery.query.one().status == "sent"
    (letter,) = smtp_letters(smtp_server)
    check_form(letter)
    assert b"aigul" not in letter.data
    assert letter.mailbox("To") == ("Ақорда баспасөз қызметі", "+77172745631@fax.tc")
    assert {key.lower() for key in letter.message.keys()} == LETTER_HEADERS - {"content-transfer-encoding"}
    (pdf,) = letter.message.iter_attachments()
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf.get_content())).pages)
    assert "Айгүл Сәрсенова" in text and "Кәсіподақ" in text and "Қазақстан" in text
    assert "aigul" not in text and "@" not in text


# --- several connections --------------------------------------------------------------------------------

@pytest.mark.slow
def test_four_connections_send_every_letter_exactly_once(make_app, scripted_smtp):
    # The first letters take a moment at DATA, so the batch needs more than one connection.
    controller, inbox = scripted_smtp(data_replies=[0.2] * 8)
    app = smtp_backed_app(make_app, controller, DELIVERY_CONNECTIONS=4)
    client = app.test_client()
    for n in range(10):
        assert sign(client, name=f"Supporter {n}", email=f"s{n}@example.org").status_code == 303
    with app.app_context():
        assert deliver_due() == 50
        stored = {d.message_id: d.status for d in Delivery.query}
    assert len(stored) == 50
    assert set(stored.values()) == {"sent"}
    arrived = collections.Counter(Received(e.original_content).message["Message-ID"] for e in inbox.envelopes)
    assert arrived == collections.Counter(set(stored))  # each exactly once
    assert inbox.connections == 4


@pytest.mark.slow
def test_four_connections_keep_the_hourly_cap_and_record_failures(make_app, scripted_smtp):
    controller, inbox = scripted_smtp(rcpt_replies=["550 5.1.1 no such mailbox"], data_replies=[0.1] * 8)
    app = smtp_backed_app(make_app, controller, DELIVERY_CONNECTIONS=4, TARGET_HOURLY_CAP=3)
    client = app.test_client()
    for n in range(6):
        sign(client, name=f"Supporter {n}", email=f"s{n}@example.org")
    with app.app_context():
        assert deliver_due() == 30
        by_target = collections.defaultdict(collections.Counter)
        for delivery in Delivery.query:
            by_target[delivery.target_key][delivery.status] += 1
        failed = Delivery.query.filter_by(status="failed").one()
        assert "550 5.1.1 no such mailbox" in failed.last_error
    # Three letters a target, however many connections were sending at once;
    # the refused one does not count, so its target still got three.
    assert {target: counts["sent"] for target, counts in by_target.items()} == {target: 3 for target in by_target}
    assert sum(counts["pending"] for counts in by_target.values()) == 30 - 15 - 1
    assert len(inbox.envelopes) == 15


@pytest.mark.slow
@pytest.mark.parametrize("connections", [0, "4", 2.0, True])
def test_delivery_connections_must_be_a_whole_number(make_app, connections):
    with pytest.raises(ConfigError, match="DELIVERY_CONNECTIONS must be a whole number"):
        make_app(DELIVERY_CONNECTIONS=connections)
    # Changed in a running app, it stops the worker before anything is claimed.
    app = make_app()
    sign(app.test_client())
    app.config["DELIVERY_CONNECTIONS"] = connections
    with app.app_context(), pytest.raises(ValueError, match="DELIVERY_CONNECTIONS"):
        deliver_due()
    with app.app_context():
        assert {d.status for d in Delivery.query} == {"pending"}


def test_a_plugin_can_still_use_as_email(make_app):
    letter = make_letter(from_name=CRLF_PAYLOAD, reply_to_name=CRLF_PAYLOAD)
    message = letter.as_email()
    assert isinstance(message, EmailMessage)
    assert {key.lower() for key in message.keys()} == LETTER_HEADERS
    assert message["X-Injected"] is None
    assert message.get_content().startswith("Libérez-le.")
    assert dataclasses.replace(letter, to_address="x@fax.tc").as_email()["To"].addresses[0].addr_spec == "x@fax.tc"
    assert letter.as_email("gateway@fax.tc")["To"].addresses[0].addr_spec == "gateway@fax.tc"


@pytest.mark.slow
def test_a_supporter_forgotten_while_two_connections_send_loses_no_one_elses_outcome(make_app, scripted_smtp, caplog):
    """`clamor forget` while a letter of theirs is at DATA on one connection and the other connection goes on."""
    import logging

    caplog.set_level(logging.INFO, logger="app.delivery")
    app, inbox, claimed = forget_during_a_slow_batch(make_app, scripted_smtp, "anna@example.org",
                                                     DELIVERY_CONNECTIONS=2)
    assert claimed == [10]
    senders = collections.Counter(Received(e.original_content).message["Reply-To"].addresses[0].addr_spec
                                  for e in inbox.envelopes)
    assert senders == {"anna@example.org": 5, "bob@example.org": 5}
    with app.app_context():
        # Anna's letter that was at DATA had no row left to record; her sent ones
        # keep only target and time; Bob's are all recorded, once.
        deliveries = {d.id: d for d in Delivery.query}
        (gone,) = set(range(1, 11)) - set(deliveries)
        assert gone <= 5  # one of Anna's
        assert {d.status for d in deliveries.values()} == {"sent"}
        assert {d.signature.email for d in deliveries.values() if d.signature} == {"bob@example.org"}
    assert f"delivery {gone} was deleted while it was being sent" in caplog.text
