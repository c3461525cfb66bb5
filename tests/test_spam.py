"""Spam filters as plugins: each one letting a person through and stopping what it is for."""

import re
import time
from html import unescape
from pathlib import Path

import pytest
from conftest import SLUG, counts, form_fields, sign

from app.models import Delivery, Signature, UsedToken

URL = f"/fr/{SLUG}/"


def filled(client, lang="fr", **values):
    """The form data a person would post after opening the page (not posted yet)."""
    page = client.get(f"/{lang}/{SLUG}/")
    data = form_fields(page.get_data(as_text=True))
    data.update(name="Anna Example", email="anna@example.org", country="FR", message="Libérez-le.", opt_in="no")
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}


def text(response):
    return unescape(response.get_data(as_text=True))


# number_question


@pytest.mark.slow
def test_a_number_answer_cannot_be_replayed(app, client):
    data = filled(client)
    assert client.post(URL, data=data).status_code == 303
    # The same signed answer again, even for another supporter, is refused.
    again = client.post(URL, data={**data, "email": "bob@example.org", "name": "Bob"})
    assert again.status_code == 200
    assert "Ce formulaire a déjà été envoyé" in text(again)
    with app.app_context():
        assert counts() == (1, 5)
        assert Signature.query.one().email == "anna@example.org"
    # The page drawn again asks a new number, which works once.
    assert client.post(URL, data=filled(client, email="bob@example.org")).status_code == 303
    with app.app_context():
        assert counts() == (2, 10)


def test_the_same_form_sent_twice_gets_the_thank_you_page_again_and_is_stored_once(make_app):
    app = make_app(SEND_RECEIPT=True)
    client = app.test_client()
    data = filled(client)
    first = client.post(URL, data=data)
    # A double click on Send: the very same form, and the browser shows the second answer.
    again = client.post(URL, data=data)
    assert first.status_code == again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Location"].endswith(f"/fr/{SLUG}/thanks")
    with app.app_context():
        assert counts() == (1, 6)  # five letters and the receipt
        assert Delivery.query.filter_by(kind="receipt").count() == 1
        digest = UsedToken.query.one().form_digest
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
    # One field changed (someone else pressing Back on a shared computer): refused, as before.
    other = client.post(URL, data={**data, "organisation": "Another union"})
    assert other.status_code == 200
    assert "Ce formulaire a déjà été envoyé" in text(other)
    with app.app_context():
        assert counts() == (1, 6)  # five letters and the receipt


def test_the_sent_form_digest_is_keyed_and_covers_the_csrf_token(make_app):
    from app.spam import sent_form_digest

    form = {"csrf_token": "random-in-the-browser", "name": "Anna Example", "email": "anna@example.org"}

    def digest(app, **changes):
        with app.test_request_context(URL, method="POST", data={**form, **changes}):
            return sent_form_digest()

    app, other_key = make_app(), make_app(SECRET_KEY="another-secret")
    assert digest(app) == digest(app)
    assert digest(app) != digest(other_key)
    assert digest(app) != digest(app, csrf_token="another-random-value")
    assert digest(app) != digest(app, name="Anna Exampl")


def test_a_rejected_submission_does_not_spend_the_answer(app, client):
    data = filled(client, name="")
    assert client.post(URL, data=data).status_code == 200
    assert client.post(URL, data={**data, "name": "Anna"}).status_code == 303
    with app.app_context():
        assert counts() == (1, 5)


def test_a_forged_number_token_is_refused(app, client):
    data = filled(client, **{"number_question-token": "forged", "number_question": "1234"})
    response = client.post(URL, data=data)
    assert response.status_code == 200
    assert "Ce formulaire a expiré" in text(response)
    with app.app_context():
        assert counts() == (0, 0)


# honeypot


def test_honeypot_is_drawn_out_of_sight_and_out_of_reach(client):
    html = client.get(URL).get_data(as_text=True)
    field = re.search(r'<div class="hp-field">(.*?)</div>', html, re.S).group(1)
    assert 'name="website"' in field and 'tabindex="-1"' in field and 'autocomplete="off"' in field
    assert "Laissez ce champ vide" in field
    assert "style=" not in html  # the CSP forbids inline style; clamor.css hides it
    with client.get("/static/clamor.css") as response:
        css = response.get_data(as_text=True)
    assert re.search(r"\.hp-field\s*\{[^}]*left:\s*-10000px", css)


def test_filled_honeypot_is_rejected_with_a_generic_message(app, client):
    response = sign(client, website="http://spam.example")
    assert response.status_code == 200
    html = text(response)
    assert "Votre lettre n’a pas pu être envoyée" in html
    assert "http://spam.example" not in html  # drawn empty again
    with app.app_context():
        assert counts() == (0, 0)


def test_empty_honeypot_passes(app, client):
    assert sign(client, website="").status_code == 303


# fill_time


@pytest.mark.slow
def test_a_form_sent_too_fast_comes_back_freshly_stamped(app, make_app):
    app = make_app(FILL_TIME_MIN=3)
    client = app.test_client()
    data = filled(client, message="Ma lettre à moi.")
    response = client.post(URL, data=data)
    assert response.status_code == 200
    html = text(response)
    assert "Veuillez vérifier votre lettre et l’envoyer de nouveau." in html
    assert "Ma lettre à moi." in html  # the supporter's text is kept
    assert form_fields(html)["fill_time"] != data["fill_time"]
    with app.app_context():
        assert counts() == (0, 0)


@pytest.mark.slow
def test_a_form_sent_after_the_minimum_passes(make_app):
    app = make_app(FILL_TIME_MIN=1)
    client = app.test_client()
    data = filled(client)
    time.sleep(1.1)
    assert client.post(URL, data=data).status_code == 303


@pytest.mark.slow
def test_a_stale_or_unstamped_form_comes_back(make_app):
    app = make_app(FILL_TIME_MAX=0.5)
    client = app.test_client()
    data = filled(client)
    time.sleep(0.6)
    assert "Veuillez vérifier votre lettre" in text(client.post(URL, data=data))
    for stamp in (None, "forged"):
        response = client.post(URL, data=filled(client, fill_time=stamp))
        assert "Veuillez vérifier votre lettre" in text(response)
    with app.app_context():
        assert counts() == (0, 0)


# duplicate_signer


@pytest.mark.slow
def test_a_second_signature_from_the_same_address_is_dropped_silently(app, client):
    first = sign(client, email="anna@example.org")
    again = sign(client, email="ANNA+2@Example.org", name="Anna again", message="Encore.")
    other = sign(client, email="bob@example.org")
    # The same answer as for anybody: nothing tells that the address had signed.
    assert first.status_code == again.status_code == other.status_code == 303
    assert first.headers["Location"] == again.headers["Location"] == other.headers["Location"]
    assert first.get_data() == again.get_data()
    assert client.get(again.headers["Location"]).status_code == 200
    with app.app_context():
        assert counts() == (2, 10)
        assert sorted(s.email for s in Signature.query) == ["anna@example.org", "bob@example.org"]


@pytest.mark.slow
def test_gmail_dots_and_case_count_as_the_same_address(app, client):
    sign(client, email="anna.example@gmail.com")
    sign(client, email="AnnaExample@googlemail.com")
    with app.app_context():
        assert counts() == (1, 5)


@pytest.mark.slow
def test_a_duplicate_is_dropped_even_when_another_filter_would_hold_it(app, client):
    sign(client)
    sign(client, message="http://a.example http://b.example http://c.example")
    with app.app_context():
        assert counts() == (1, 5)
        assert Signature.query.one().status == "accepted"


# links


def test_a_letter_with_too_many_links_is_held(app, client):
    letter = "Voyez http://a.example, https://b.example/x et www.c.example."
    assert sign(client, message=letter).status_code == 303
    with app.app_context():
        signature = Signature.query.one()
        assert signature.status == "held"
        # Moderators read the reason in the deployment's default language.
        assert signature.status_reason == "The letter contains 3 links (more than 2)."
        assert {d.status for d in signature.deliveries} == {"held"}


def test_links_in_the_signature_block_count_too(app, client):
    sign(client, organisation="www.a.example", name="Anna http://b.example", message="Voyez https://c.example.")
    with app.app_context():
        assert Signature.query.one().status == "held"


def test_a_letter_with_two_links_is_accepted(app, client):
    sign(client, message="Voyez http://a.example et https://b.example/x.")
    with app.app_context():
        assert Signature.query.one().status == "accepted"


# disposable_email


@pytest.fixture
def with_disposable(make_app):
    return make_app(SPAM_FILTERS=["number_question", "disposable_email"])


@pytest.mark.slow
@pytest.mark.parametrize("address", ["anna@mailinator.com", "anna@eu.mailinator.com"])
def test_a_disposable_address_is_rejected_clearly(with_disposable, address):
    response = sign(with_disposable.test_client(), email=address)
    assert response.status_code == 200
    assert "Les adresses chez mailinator.com sont jetables" in text(response)
    with with_disposable.app_context():
        assert counts() == (0, 0)


def test_a_lasting_address_passes_the_disposable_filter(with_disposable):
    assert sign(with_disposable.test_client(), email="anna@example.org").status_code == 303


# every filter is a plugin, and a broken one holds


BROKEN_FILTER = '''
from app import hookimpl

@hookimpl
def check_submission(submission, campaign):
    raise RuntimeError("this filter has a bug")
'''


def test_a_filter_that_raises_holds_the_submission(instance_path, make_app, caplog):
    (instance_path / "plugins").mkdir()
    (instance_path / "plugins" / "broken_filter.py").write_text(BROKEN_FILTER)
    app = make_app(SPAM_FILTERS=["number_question", "broken_filter"])
    assert sign(app.test_client()).status_code == 303
    with app.app_context():
        signature = Signature.query.one()
        assert signature.status == "held"
        assert "broken_filter" in signature.status_reason
        assert {d.status for d in Delivery.query} == {"held"}
    assert "this filter has a bug" in caplog.text


def test_a_disabled_filter_does_not_run(make_app):
    app = make_app(SPAM_FILTERS=["number_question"])
    client = app.test_client()
    html = client.get(URL).get_data(as_text=True)
    assert 'name="website"' not in html and 'name="fill_time"' not in html
    assert sign(client, website="filled by a bot").status_code == 303


RACING_REQUEST = '''
from app import hookimpl
from app.extensions import db
from app.models import UsedToken

@hookimpl
def check_submission(submission, campaign):
    # Stands in for a second request with the same answer that commits while
    # this one is being judged.
    nonce, expires_at = submission.form.number_question.one_time_token
    with db.engine.begin() as other:
        other.execute(UsedToken.__table__.insert().values(nonce=nonce, expires_at=expires_at))
'''


def test_a_replay_racing_the_first_use_stores_nothing(instance_path, make_app):
    (instance_path / "plugins").mkdir()
    (instance_path / "plugins" / "racing_request.py").write_text(RACING_REQUEST)
    app = make_app(SPAM_FILTERS=["number_question", "racing_request"])
    response = sign(app.test_client())
    assert response.status_code == 200
    assert "Ce formulaire a déjà été envoyé. Veuillez le vérifier" in text(response)
    with app.app_context():
        assert counts() == (0, 0)


def test_the_same_form_racing_its_first_sending_gets_the_thank_you_page(instance_path, make_app):
    # The other request has the same body: it spent the answer with this form's digest.
    racer = RACING_REQUEST.replace("from app.models import UsedToken", "from app.models import UsedToken\n"
                                   "from app.spam import sent_form_digest")
    racer = racer.replace("expires_at=expires_at)", "expires_at=expires_at, form_digest=sent_form_digest())")
    (instance_path / "plugins").mkdir()
    (instance_path / "plugins" / "racing_request.py").write_text(racer)
    app = make_app(SPAM_FILTERS=["number_question", "racing_request"])
    response = sign(app.test_client())
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/fr/{SLUG}/thanks")
    with app.app_context():
        # Only the other request's work stays (here just its spent answer).
        assert counts() == (0, 0)
        assert UsedToken.query.count() == 1


def test_the_filter_documented_in_docs_spam_works(instance_path, make_app):
    docs = (Path(__file__).resolve().parent.parent / "docs" / "spam.md").read_text()
    example = re.search(r"```python\n(.*?)```", docs.split("## Writing a filter")[1], re.S).group(1)
    (instance_path / "plugins").mkdir()
    (instance_path / "plugins" / "blocked_domains.py").write_text(example)
    app = make_app(SPAM_FILTERS=["number_question", "blocked_domains"], BLOCKED_DOMAINS=["spam.example"])
    client = app.test_client()
    assert sign(client, email="anna@spam.example").status_code == 303
    assert sign(client, email="bob@example.org").status_code == 303
    with app.app_context():
        assert {s.email: s.status for s in Signature.query} == {
            "anna@spam.example": "held", "bob@example.org": "accepted"
        }
