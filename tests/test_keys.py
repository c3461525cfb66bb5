"""SECRET_KEY is never used as a key: one HKDF subkey per purpose, and a random key for a debug run without one."""

import pytest
from conftest import SLUG, counts, form_fields, sign
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from app import create_app
from app.keys import subkey

RAW = "test-secret"  # conftest's SECRET_KEY


def test_every_purpose_has_its_own_key_and_none_is_the_raw_one(app):
    with app.app_context():
        keys = {purpose: subkey(purpose) for purpose in (
            "flask-session", "csrf", "token:confirm", "token:status", "token:unsubscribe", "client-address",
            "rate-limit-email", "plugin:number_question", "plugin:fill_time")}
    assert app.config["SECRET_KEY"] == keys["flask-session"]
    assert app.config["WTF_CSRF_SECRET_KEY"] == keys["csrf"]
    assert len(set(keys.values())) == len(keys)
    assert all(len(key) == 32 and RAW.encode() not in key for key in keys.values())


@pytest.mark.slow
def test_a_session_and_csrf_token_forged_with_the_raw_key_are_refused(app, client):
    # What an attacker who learnt the raw SECRET_KEY of an older version would forge.
    page = client.get(f"/fr/{SLUG}/").get_data(as_text=True)
    fields = form_fields(page)
    forged_csrf = URLSafeTimedSerializer(RAW, salt="wtf-csrf-token").dumps("f" * 40)
    session_serializer = URLSafeTimedSerializer(
        RAW, salt="cookie-session", serializer=SecureCookieSessionInterface.serializer,
        signer_kwargs={"key_derivation": "hmac", "digest_method": SecureCookieSessionInterface.digest_method})
    attacker = app.test_client()
    attacker.set_cookie("session", session_serializer.dumps({"csrf_token": "f" * 40}))
    fields.update(csrf_token=forged_csrf, name="Eve", email="eve@example.org", country="FR",
                  message="Forged.", opt_in="no")
    response = attacker.post(f"/fr/{SLUG}/", data=fields)
    assert response.status_code == 400
    # The number question signed with the raw key is refused too.
    fields_ok = form_fields(client.get(f"/fr/{SLUG}/").get_data(as_text=True))
    forged_question = URLSafeTimedSerializer(RAW, salt="clamor.number_question").dumps({"n": "1234", "nonce": "n" * 32})
    fields_ok.update({"number_question-token": forged_question, "number_question": "1234", "name": "Eve",
                      "email": "eve@example.org", "country": "FR", "message": "Forged.", "opt_in": "no"})
    assert client.post(f"/fr/{SLUG}/", data=fields_ok).status_code == 200  # the form comes back
    with app.app_context():
        assert counts() == (0, 0)
    # The genuine form still works.
    assert sign(client).status_code == 303


def test_a_debug_run_without_a_key_gets_a_random_one_each_time(app_config, instance_path, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    config = {k: v for k, v in app_config.items() if k not in ("SECRET_KEY", "TESTING")}
    first, second = (create_app(dict(config), instance_path=instance_path) for _ in range(2))
    assert first.debug and second.debug
    assert first.config["SECRET_KEY"] != second.config["SECRET_KEY"]
    # Neither is derived from the constant the old code used.
    from app.keys import Keys

    assert Keys("insecure-development-key").get("flask-session") not in (
        first.config["SECRET_KEY"], second.config["SECRET_KEY"])
