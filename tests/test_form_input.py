"""Whatever is typed or posted: refused with a clear message, stored clean, shown escaped, never a 500."""

import csv
import io
import itertools
import re
import sys
import unicodedata
from html import unescape

import pytest
from conftest import ORGANISER, PASSWORD, SLUG, add_organiser, counts, form_fields, login, sign
from flask_wtf import FlaskForm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.delivery import deliver_due
from app.export import spreadsheet_safe, spreadsheet_value
from app.i18n import country_choices
from app.models import Signature

CONTROL = "Veuillez supprimer les retours à la ligne et les caractères de contrôle."
BAD_CHARACTERS = ["\x00", "\r", "\n", "\t", "\x1b", "\x7f", "\x85", "\u2028"]


def text(response):
    return unescape(response.get_data(as_text=True))


@pytest.mark.slow
@pytest.mark.parametrize("character", BAD_CHARACTERS)
@pytest.mark.parametrize("field", ["name", "organisation"])
def test_one_line_fields_refuse_control_characters(app, client, field, character):
    response = sign(client, **{field: f"Anna{character}Example"})
    assert response.status_code == 200
    assert CONTROL in text(response)
    with app.app_context():
        assert counts() == (0, 0)


@pytest.mark.slow
@pytest.mark.parametrize("country", ["\r\nFR", "FR\x00", "\r\n", " ", "XX", "ZZ", "fr"])
def test_country_must_be_a_code_from_the_list(app, client, country):
    response = sign(client, country=country)
    assert response.status_code == 200
    assert "Veuillez choisir un pays dans la liste." in text(response)
    with app.app_context():
        assert counts() == (0, 0)


@pytest.mark.slow
def test_no_country_is_fine(app, client):
    assert sign(client, country="").status_code == 303
    with app.app_context():
        assert Signature.query.one().country == ""


@pytest.mark.slow
@pytest.mark.parametrize("field", ["email", "message"])
def test_nul_is_refused_everywhere(app, client, field):
    value = {"email": "anna\x00@example.org", "message": "Libérez-le.\x00"}[field]
    assert sign(client, **{field: value}).status_code == 200
    with app.app_context():
        assert counts() == (0, 0)


def test_the_letter_may_have_line_breaks(app, client):
    assert sign(client, message="Monsieur,\r\n\r\nLibérez-le.\tMerci.").status_code == 303
    with app.app_context():
        assert Signature.query.one().message == "Monsieur,\n\nLibérez-le.\tMerci."


@pytest.mark.slow
def test_the_letter_is_required(app, client):
    response = sign(client, message=" \r\n ")
    assert "Veuillez écrire votre message." in text(response)
    with app.app_context():
        assert counts() == (0, 0)


@pytest.mark.parametrize("field, limit", [("name", 200), ("organisation", 200), ("email", 320)])
def test_every_field_has_a_maximum_length(app, client, field, limit):
    long = {"email": "a" * 64 + "@" + ("b" * 60 + ".") * 5 + "org"}.get(field, "x" * (limit + 1))
    assert len(long) > limit
    assert sign(client, **{field: long}).status_code == 200
    with app.app_context():
        assert counts() == (0, 0)


def test_unknown_language_prefix_is_a_translated_404(client):
    response = client.get(f"/xx/{SLUG}/", headers={"Accept-Language": "fr"})
    assert response.status_code == 404
    assert "Page introuvable" in text(response)
    assert client.post(f"/xx/{SLUG}/", data={"name": "x"}).status_code == 404


def test_error_pages_speak_the_language_of_the_url(client):
    response = client.post(f"/fr/{SLUG}/thanks")  # routing fails before the view
    assert response.status_code == 405
    html = response.get_data(as_text=True)
    assert '<html lang="fr">' in html and "Cette action n’est pas possible" in unescape(html)
    assert "Traceback" not in html


@pytest.mark.slow
def test_what_the_supporter_typed_is_shown_as_text(app, client):
    script = "<script>alert(1)</script>"
    # Refused by the form (bad address) and by a filter (the honeypot): both
    # pages show the letter and the name again.
    for extra in ({"email": "not-an-address"}, {"website": "bot"}):
        response = sign(client, name=f'Anna"><b>{script}', organisation=script, message=f"Bonjour {script}", **extra)
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        assert "<script" not in html and "<b>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    with app.app_context():
        assert counts() == (0, 0)


@pytest.mark.slow
def test_no_bcc_header_reaches_a_real_smtp_server_from_the_form(make_app, smtp_server):
    app = make_app(DELIVERY={"email": "smtp"}, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp_server.port)
    client = app.test_client()
    names = ["Eve\r\nBcc: victim@example.org", "Eve\nBcc: victim@example.org", "Eve\rBcc: victim@example.org",
             "Eve\x85Bcc: victim@example.org", "Eve\u2028Bcc: victim@example.org", "Eve Bcc: victim@example.org"]
    statuses = [sign(client, name=name, email=f"eve{i}@example.org").status_code for i, name in enumerate(names)]
    assert statuses == [200, 200, 200, 200, 200, 303]  # only the one-line name is accepted
    with app.app_context():
        assert deliver_due() == 5
    assert len(smtp_server.inbox.envelopes) == 5
    for envelope, message in zip(smtp_server.inbox.envelopes, smtp_server.inbox.messages, strict=True):
        assert message["Bcc"] is None
        assert "victim@example.org" not in envelope.rcpt_tos
        assert not any(line.lower().startswith(b"bcc:") for line in envelope.original_content.splitlines())


# Random input in every field.

KEEP = object()
FIELDS = ["name", "email", "organisation", "country", "message", "opt_in",
          "number_question", "number_question-token", "website", "fill_time"]
NASTY = ["\x00", "\r\n", "Eve\r\nBcc: victim@example.org", "<script>alert(1)</script>", "FR", "yes",
         "anna@example.org", "ａｎｎａ@example.org", "x" * 100_000, "é" * 40_000, " ", "\u202e", "\ud7ff"]
value = st.one_of(
    st.just(KEEP),
    st.none(),
    st.text(max_size=400),
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=50),
    st.sampled_from(NASTY),
)
#: A fresh address per example, so that duplicate_signer does not drop them all.
SUPPORTERS = itertools.count()
COUNTRIES = {code for code, _ in country_choices("en")} | {""}


def clean_line(value, limit):
    return len(value) <= limit and not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)


@pytest.mark.slow
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.fixed_dictionaries({field: value for field in FIELDS}))
def test_random_input_never_breaks_the_form(app, client, changes):
    page = client.get(f"/fr/{SLUG}/")
    data = form_fields(page.get_data(as_text=True))
    data.update(name="Anna", email=f"anna{next(SUPPORTERS)}@example.org", country="FR", message="Libérez-le.",
                opt_in="no")
    for field, change in changes.items():
        if change is None:
            data.pop(field, None)
        elif change is not KEEP:
            data[field] = change
    with app.app_context():
        before = counts()
    response = client.post(f"/fr/{SLUG}/", data=data)  # an unhandled error would raise here
    assert response.status_code in (200, 303, 413)
    assert "Traceback" not in response.get_data(as_text=True)
    with app.app_context():
        after = counts()
        if response.status_code != 303:
            assert after == before
        elif after != before:
            signature = Signature.query.order_by(Signature.id.desc()).first()
            assert clean_line(signature.name, 200) and signature.name
            assert clean_line(signature.organisation, 200)
            assert clean_line(signature.email, 320) and "@" in signature.email
            assert signature.country in COUNTRIES
            assert 0 < len(signature.message) <= app.config["MESSAGE_MAX_LENGTH"]
            assert "\x00" not in signature.message


# Fields posted as files, addresses that cannot be carried, CSV exports.


def as_uploads(data, fields):
    """``data`` with ``fields`` sent as file uploads (multipart) holding the same text."""
    return {k: (io.BytesIO(v.encode()), f"{k}.txt") if k in fields else v for k, v in data.items()}


@pytest.mark.slow
@pytest.mark.parametrize("fields", [{"name"}, {"email"}, {"message"}, {"name", "email", "organisation", "country"}])
def test_a_field_posted_as_a_file_is_missing_not_a_500(app, client, fields):
    url = f"/fr/{SLUG}/"
    data = form_fields(client.get(url).get_data(as_text=True))
    data.update(name="Anna Example", email="anna@example.org", organisation="Union", country="FR",
                message="Libérez-le.", opt_in="no")
    response = client.post(url, data=as_uploads(data, fields), content_type="multipart/form-data")
    assert response.status_code in (200, 400)
    html = text(response)
    assert "Veuillez corriger les champs signalés ci-dessous." in html
    assert html.count("Veuillez remplir ce champ.") >= len(fields)
    with app.app_context():
        assert counts() == (0, 0)


@pytest.mark.slow
def test_the_admin_login_posted_as_files_is_refused_not_a_500(app, client):
    add_organiser(app)
    page = client.get("/admin/login")
    data = {"csrf_token": form_fields(page.get_data(as_text=True))["csrf_token"], "email": ORGANISER,
            "password": PASSWORD}
    response = client.post("/admin/login", data=as_uploads(data, {"email", "password"}),
                           content_type="multipart/form-data")
    assert response.status_code == 401
    assert "Wrong email address or password." in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302  # not logged in


def test_every_form_of_the_app_reads_the_posted_form_only():
    from app.admin import LoginForm
    from app.forms import ActionForm, PostedForm

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    ours = [cls for cls in subclasses(FlaskForm) if cls.__module__.startswith(("app.", "plugins."))]
    assert {ActionForm, LoginForm} <= set(ours)
    assert [cls for cls in ours if not issubclass(cls, PostedForm)] == []


NON_LATIN_LOCAL_PART = "Please give an address without accents or non-Latin letters before the @"


@pytest.mark.parametrize("email", ["ПРИМЕР@example.org", "josé@example.org", "アンナ@example.org"])
def test_an_address_with_a_non_ascii_local_part_is_refused_while_no_backend_carries_it(app, client, email):
    # In English: the message is new, and not translated yet.
    response = sign(client, lang="en", email=email)
    assert response.status_code == 200
    assert NON_LATIN_LOCAL_PART in text(response)
    with app.app_context():
        assert counts() == (0, 0)


@pytest.mark.slow
@pytest.mark.parametrize("email", ["anna@bücher.de", "anna@пример.рф"])
def test_an_internationalised_domain_is_accepted(app, client, email):
    assert sign(client, email=email).status_code == 303
    with app.app_context():
        assert Signature.query.one().email == email


#: A delivery backend that says it carries SMTPUTF8 addresses.
UTF8_BACKEND = '''
from app import hookimpl
from app.delivery import DeliveryBackend, Receipt


class Utf8Outbox(DeliveryBackend):
    name = "utf8_outbox"
    smtputf8 = True

    def send(self, letter):
        return Receipt()


@hookimpl
def register_delivery_backends():
    return [Utf8Outbox]
'''


def test_a_non_ascii_local_part_is_accepted_when_the_email_backend_carries_it(make_app, instance_path):
    (instance_path / "plugins").mkdir()
    (instance_path / "plugins" / "utf8_outbox.py").write_text(UTF8_BACKEND)
    app = make_app(DELIVERY={"email": "utf8_outbox", "fax": "fax_email"})
    assert sign(app.test_client(), email="ПРИМЕР@example.org").status_code == 303
    with app.app_context():
        assert Signature.query.one().email == "ПРИМЕР@example.org"


#: What a spreadsheet would run as a formula at the start of a cell.
TRIGGERS = ("=", "+", "-", "@")
#: (name, organisation) pairs that try to start a cell with a formula, in a
#: reader splitting on "," or on ";" (a French or Russian Excel).
FORMULAS = [
    ('Anna;=HYPERLINK("http://evil")', "x;+cmd"),
    ("=cmd()", "Union; -2+3"),
    ('Bob;" =1', "Acme;;@SUM(A1)"),
    ("Carla ; '=1", "Plain; text"),
]


def assert_no_formula(csv_text):
    for delimiter in (",", ";"):
        for row in csv.reader(io.StringIO(csv_text), delimiter=delimiter):
            for cell in row:
                assert not cell.strip().startswith(TRIGGERS), (delimiter, cell)
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    got = {(spreadsheet_value(r["name"]), spreadsheet_value(r["organisation"])) for r in rows}
    assert got == set(FORMULAS)


@pytest.mark.slow
def test_the_csv_exports_start_no_cell_with_a_formula_whatever_the_delimiter(app, client):
    for i, (name, organisation) in enumerate(FORMULAS):
        assert sign(client, name=name, organisation=organisation, email=f"p{i}@example.org").status_code == 303
    exported = app.test_cli_runner().invoke(args=["export"])
    assert exported.exit_code == 0, exported.output
    assert_no_formula(exported.output)
    add_organiser(app)
    admin = app.test_client()
    login(admin)
    download = admin.get(f"/admin/{SLUG}/export.csv")
    assert download.status_code == 200
    assert_no_formula(download.get_data(as_text=True))


@pytest.mark.parametrize("value", [name for pair in FORMULAS for name in pair] + [
    "'=already quoted", "a;\"\"=1", "\t=1", "x;\t@1", "-5", "2026-01-01", "",
])
def test_spreadsheet_value_undoes_spreadsheet_safe(value):
    assert spreadsheet_value(spreadsheet_safe(value)) == value


def test_a_cell_is_left_as_it_is_only_where_the_formula_guard_would_change_nothing():
    from app.export import _FORMULA, _MAY_LEAD

    # Every character the guard's pattern can begin a match with, at a cell's start, is one the shortcut checks.
    may_lead = re.compile(r"""[\s"'=+\-@\t\r]""")
    for code in range(sys.maxunicode + 1):
        c = chr(code)
        assert bool(may_lead.match(c)) == (c in _MAY_LEAD or c.isspace()), hex(code)
    for value in [name for pair in FORMULAS for name in pair] + ["\u00a0=1", "\u2003@x", "x;=1", "anna@example.org"]:
        assert spreadsheet_safe(value) == _FORMULA.sub(r"\1\2'", value), value


@given(st.text(alphabet=st.sampled_from("ab ;\"'=+-@\t\r\u00a0\u3000"), max_size=8) | st.text())
def test_the_formula_guard_and_its_shortcut_agree_on_any_text(value):
    from app.export import _FORMULA

    assert spreadsheet_safe(value) == _FORMULA.sub(r"\1\2'", value)
