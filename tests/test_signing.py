"""The campaign page and signing it: what a supporter sees, what is stored."""

import re

import pytest
from conftest import SLUG, counts, form_fields, sign

from app.models import Signature

SEED_TITLE = "Kazakhstan : Libérez le militant syndicaliste Erzhan Elshibayev"
SEED_TARGETS = [
    "press@prokuror.kz",
    "press@akorda.kz",
    "press@mfa.kz",
    "zhumakovasholpan@gmail.com",
    "knprkcampaign@gmail.com",
]


def test_french_page_shows_the_seed_campaign(client):
    response = client.get(f"/fr/{SLUG}/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<html lang="fr">' in html
    assert SEED_TITLE in html
    assert "Votre message sera envoyé aux adresses suivantes" in html
    for address in SEED_TARGETS:
        assert address in html
    assert "Mission de surveillance des droits du travail en Asie centrale" in html
    # The form with exactly the contract's field names, consent not pre-ticked.
    for name in ("name", "email", "organisation", "country", "message", "opt_in", "number_question"):
        assert f'name="{name}"' in html
    assert re.search(r'<input[^>]*checked[^>]*value="no"|<input[^>]*value="no"[^>]*checked', html)
    assert not re.search(r'<input[^>]*checked[^>]*value="yes"|<input[^>]*value="yes"[^>]*checked', html)
    # The letter is pre-filled in French.
    assert "Monsieur le Président" in html


def test_page_loads_nothing_from_another_origin(client):
    response = client.get(f"/fr/{SLUG}/")
    html = response.get_data(as_text=True)
    for url in re.findall(r'(?:src|href|action)="([^"]+)"', html):
        assert url.startswith("/"), url
    csp = response.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "object-src 'none'", "base-uri 'none'"):
        assert directive in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "<script" not in html


def test_root_redirects_to_best_accepted_language(client):
    response = client.get("/", headers={"Accept-Language": "ru;q=0.9, de;q=1.0, en;q=0.5"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/ru/{SLUG}/")
    response = client.get("/", headers={"Accept-Language": "de"})
    assert response.headers["Location"].endswith(f"/fr/{SLUG}/")


def test_unknown_language_is_404(client):
    assert client.get(f"/xx/{SLUG}/").status_code == 404
    assert client.get("/fr/no-such-campaign/").status_code == 404


def test_signing_stores_one_signature_and_a_delivery_per_target(app, client):
    response = sign(client, name="Anna Example", email="Anna@Example.org", opt_in="yes", message="Libérez-le.")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/fr/{SLUG}/thanks")
    with app.app_context():
        signature = Signature.query.one()
        assert (signature.name, signature.email, signature.language) == ("Anna Example", "Anna@example.org", "fr")
        assert signature.opt_in is True and signature.consented_at is not None
        assert signature.status == "accepted"
        assert signature.message == "Libérez-le."
        assert sorted(d.target_key for d in signature.deliveries) == sorted(SEED_TARGETS)
        assert {d.status for d in signature.deliveries} == {"pending"}
        assert len({d.message_id for d in signature.deliveries}) == 5
        # The client address is never stored raw.
        assert signature.client_hash and "127.0.0.1" not in signature.client_hash

    thanks = client.get(response.headers["Location"])
    html = thanks.get_data(as_text=True)
    assert thanks.status_code == 200
    assert "Merci" in html
    assert f"http://localhost/fr/{SLUG}/" in html


def test_invalid_form_keeps_values_shows_errors_and_stores_nothing(app, client):
    response = sign(client, name="", email="not-an-address", organisation="Syndicat Sud")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Veuillez saisir votre nom." in html
    assert "Veuillez saisir une adresse électronique valide." in html
    assert 'value="Syndicat Sud"' in html
    assert 'value="not-an-address"' in html
    with app.app_context():
        assert counts() == (0, 0)


def test_wrong_number_answer_stores_nothing(app, client):
    response = sign(client, number_question="0000")
    assert response.status_code == 200
    assert "Ce n’est pas le nombre affiché" in response.get_data(as_text=True)
    with app.app_context():
        assert counts() == (0, 0)


@pytest.mark.slow
def test_missing_csrf_token_is_a_clear_400_and_stores_nothing(app, client):
    response = sign(client, csrf_token=None)
    assert response.status_code == 400
    assert "Votre formulaire a expiré" in response.get_data(as_text=True)
    response = sign(client, csrf_token="forged")
    assert response.status_code == 400
    with app.app_context():
        assert counts() == (0, 0)


def test_control_characters_in_name_are_refused(app, client):
    response = sign(client, name="Eve\r\nBcc: victim@example.org")
    assert response.status_code == 200
    assert "Veuillez supprimer les retours à la ligne" in response.get_data(as_text=True)
    with app.app_context():
        assert counts() == (0, 0)


@pytest.mark.slow
def test_message_longer_than_the_limit_is_refused(app, client):
    response = sign(client, message="x" * (app.config["MESSAGE_MAX_LENGTH"] + 1))
    assert response.status_code == 200
    with app.app_context():
        assert counts() == (0, 0)
    response = sign(client, message="x" * app.config["MESSAGE_MAX_LENGTH"])
    assert response.status_code == 303


def test_country_names_follow_the_page_language(client):
    fr = client.get(f"/fr/{SLUG}/").get_data(as_text=True)
    ru = client.get(f"/ru/{SLUG}/").get_data(as_text=True)
    assert '<option value="DE">Allemagne</option>' in fr
    assert '<option value="DE">Германия</option>' in ru
    assert form_fields(fr)["csrf_token"]


def test_too_large_request_gets_a_translated_413_and_stores_nothing(app, client):
    response = sign(client, message="x" * (app.config["MAX_CONTENT_LENGTH"] + 1))
    html = response.get_data(as_text=True)
    assert response.status_code == 413
    assert "Texte trop long" in html
    assert 'href="/"' in html
    assert "Traceback" not in html
    with app.app_context():
        assert counts() == (0, 0)


@pytest.mark.parametrize("settings", [{}, {"CONFIRM_SUPPORTER_EMAIL": True}, {"SPAM_FILTERS": []},
                                      {"SPAM_FILTERS": [], "CONFIRM_SUPPORTER_EMAIL": True}],
                         ids=["accepted", "unconfirmed", "accepted-no-filters", "unconfirmed-no-filters"])
def test_the_signature_and_the_mail_to_the_supporter_commit_together(make_app, app_config, settings):
    # On SQLite a SAVEPOINT outside a transaction starts one of its own, and
    # its RELEASE commits: signature and letters would be stored before the
    # receipt or confirmation mail, in another transaction. So the savepoint
    # of store_signature must be released inside the open transaction, on
    # every path (an unconfirmed signature moves no counter before it).
    from sqlalchemy import event

    from app.extensions import db

    app_config.update(SEND_RECEIPT=True, **settings)
    app = make_app()
    released = []

    def after(conn, cursor, statement, *args):
        if statement.startswith("RELEASE SAVEPOINT"):
            released.append(conn.connection.dbapi_connection.in_transaction)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "after_cursor_execute", after)
    try:
        # Twice: whatever a process does once (a first request's housekeeping) must not be what makes it right.
        assert sign(app.test_client()).status_code == 303
        assert sign(app.test_client(), email="boris@example.org").status_code == 303
    finally:
        event.remove(engine, "after_cursor_execute", after)
    assert released == [True, True]


def test_a_signatures_letters_are_one_insert_and_its_reads_come_before_its_first_write(make_app, app_config):
    # On SQLite every signing request waits for the one write lock, held from
    # a request's first write to its commit: a read after the first write
    # (the suspended targets) or a statement per letter makes the others wait.
    from sqlalchemy import event

    from app.extensions import db

    app_config.update(SEND_RECEIPT=True)
    app = make_app()
    statements = []

    def before(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement.split()[0], statement, parameters if executemany else [parameters]))

    with app.app_context():
        engine = db.engine
    client = app.test_client()
    client.get(f"/fr/{SLUG}/")  # the page's own reads stay out of the record
    event.listen(engine, "before_cursor_execute", before)
    try:
        assert sign(client).status_code == 303
    finally:
        event.remove(engine, "before_cursor_execute", before)
    writes = [n for n, (verb, _, _) in enumerate(statements) if verb in ("INSERT", "UPDATE", "DELETE")]
    reads_before = [text for verb, text, _ in statements[:writes[0]] if verb == "SELECT"]
    assert any("target_health" in text for text in reads_before)
    assert not any("target_health" in text for verb, text, _ in statements[writes[0]:])
    inserts = [rows for verb, text, rows in statements if verb == "INSERT" and text.startswith("INSERT INTO delivery ")]
    # One statement for the five letters, one for the receipt.
    assert [len(rows) for rows in inserts] == [5, 1]
    with app.app_context():
        signature = Signature.query.one()
        assert sorted(d.target_key for d in signature.deliveries if d.kind == "letter") == sorted(SEED_TARGETS)
        assert [d.kind for d in signature.deliveries if d.kind != "letter"] == ["receipt"]
