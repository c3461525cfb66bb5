"""Rate limits per client address and per supporter address; X-Forwarded-For is not trusted by default."""

import logging

import pytest
from conftest import SLUG, counts, sign

from app import ConfigError, create_app
from app.extensions import limiter
from app.keys import subkey
from app.models import Signature
from app.security import client_hash

#: A client address behind a trusted proxy, as X-Forwarded-For gives it.
CLIENT = "203.0.113.77"


@pytest.fixture
def limited(make_app):
    """An app allowing two letters per minute, with counters that start at zero."""

    def make(**overrides):
        app = make_app(RATELIMIT_ENABLED=True, SUBMIT_RATE_LIMIT="2 per minute", **overrides)
        # The limiter is one module-level extension: start from clean counters.
        with app.app_context():
            limiter.reset()
        return app

    return make


@pytest.mark.slow
def test_the_third_letter_from_one_address_gets_a_translated_429_and_is_not_stored(limited):
    app = limited()
    client = app.test_client()
    assert sign(client, email="a@example.org").status_code == 303
    assert sign(client, email="b@example.org").status_code == 303
    response = sign(client, email="c@example.org")
    assert response.status_code == 429
    html = response.get_data(as_text=True)
    assert '<html lang="fr">' in html
    assert "Veuillez patienter un instant" in html
    assert "Trop de lettres ont été envoyées depuis votre connexion" in html
    assert "Traceback" not in html
    with app.app_context():
        assert counts() == (2, 10)
    # Reading the page is not limited.
    assert client.get(f"/fr/{SLUG}/").status_code == 200


@pytest.mark.slow
def test_a_spoofed_x_forwarded_for_does_not_reset_the_count(limited):
    app = limited()
    client = app.test_client()
    statuses = [
        sign(client, email=f"person{i}@example.org", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
        for i in range(4)
    ]
    assert statuses == [303, 303, 429, 429]
    with app.app_context():
        assert counts() == (2, 10)
        # Stored hashes are of the real peer address: all the same.
        assert len({s.client_hash for s in Signature.query}) == 1


@pytest.mark.slow
def test_one_supporter_address_is_limited_across_client_addresses(limited):
    app = limited()
    statuses = []
    for i, email in enumerate(["anna@example.org", "Anna+x@example.org", "ANNA@example.org"]):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{i}"
        statuses.append(sign(client, email=email).status_code)
    # The second is a duplicate (answered like any letter), the third is over the limit.
    assert statuses == [303, 303, 429]
    with app.app_context():
        assert counts() == (1, 5)


def test_behind_one_proxy_the_forwarded_address_is_counted(limited):
    app = limited(PROXY_FIX_X_FOR=1)
    client = app.test_client()
    statuses = [
        sign(client, email=f"person{i}@example.org", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
        for i in range(4)
    ]
    assert statuses == [303, 303, 303, 303]
    with app.app_context():
        hashes = {s.client_hash for s in Signature.query}
        assert len(hashes) == 4
        assert not any("203.0.113" in h for h in hashes)


def test_proxy_fix_setting_must_be_a_count(app_config, instance_path):
    with pytest.raises(ConfigError, match="PROXY_FIX_X_FOR"):
        create_app({**app_config, "PROXY_FIX_X_FOR": "yes"}, instance_path=instance_path)


def test_limiter_keys_do_not_hold_supporters_addresses(limited):
    app = limited()
    sign(app.test_client(), email="anna@example.org")
    keys = " ".join(str(key) for key in limiter.storage.storage)  # memory:// keeps them in a dict
    assert "email:" in keys
    assert "anna" not in keys and "example.org" not in keys


def test_a_forwarded_address_past_the_limit_is_in_no_log_limiter_key_or_database_file(limited, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    app = limited(PROXY_FIX_X_FOR=1)
    client = app.test_client()
    forwarded = {"X-Forwarded-For": CLIENT}
    statuses = [sign(client, email=f"person{i}@example.org", headers=forwarded).status_code for i in range(3)]
    assert statuses == [303, 303, 429]
    # The admin login's per-address limit counts by the same key.
    for _ in range(2):
        assert client.post("/admin/login", data={"email": "x@union.test", "password": "wrong"},
                           headers=forwarded).status_code == 400  # no CSRF token: refused, counted
    assert "exceeded" in caplog.text  # Flask-Limiter logged the breach ...
    assert CLIENT not in caplog.text  # ... by the hash
    keys = [str(key) for key in limiter.storage.storage]  # memory:// keeps them in a dict
    expected = client_hash(subkey("client-address", app), CLIENT)
    assert any(expected in key for key in keys)
    assert not [key for key in keys if CLIENT in key]
    with app.app_context():
        assert {s.client_hash for s in Signature.query} == {expected}
    files = list(tmp_path.glob("test.sqlite3*"))
    assert files and not [f for f in files if CLIENT.encode() in f.read_bytes()]
