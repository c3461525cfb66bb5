"""The cheaper serializer of the session cookie and CSRF token makes what stock itsdangerous and Flask accept."""

import hashlib
import os
import re
import warnings
from email.utils import parsedate_to_datetime

import pytest
from conftest import SLUG
from flask import Flask
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SecureCookieSessionInterface
from hypothesis import example, given
from hypothesis import strategies as st
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.signed_values import COMPRESS_FROM, SessionJSON, SignedValues


@pytest.mark.parametrize("value", ["0" * 40, {"csrf_token": "ab" * 20}, "x" * (COMPRESS_FROM * 3)])
def test_what_it_signs_stock_itsdangerous_loads_and_the_other_way_round(value):
    ours = SignedValues(["old key", "current key"], salt="wtf-csrf-token")
    stock = URLSafeTimedSerializer(["old key", "current key"], salt="wtf-csrf-token")
    assert stock.loads(ours.dumps(value), max_age=60) == value
    assert ours.loads(stock.dumps(value), max_age=60) == value
    # What the old key signed (before a rotation, SECRET_KEY_FALLBACKS) still loads.
    assert ours.loads(URLSafeTimedSerializer("old key", salt="wtf-csrf-token").dumps(value)) == value
    # Signed with the current key: a serializer that knows only the old one refuses it.
    with pytest.raises(BadSignature):
        URLSafeTimedSerializer("old key", salt="wtf-csrf-token").loads(ours.dumps(value))
    with pytest.raises(BadSignature):
        ours.loads(URLSafeTimedSerializer("another key", salt="wtf-csrf-token").dumps(value))


def test_a_short_payload_is_not_compressed_and_a_long_one_still_is():
    ours = SignedValues("key", salt="s")
    assert not ours.dumps("0" * 40).startswith(".")
    long = ours.dumps("x" * (COMPRESS_FROM * 3))
    assert long.startswith(".") and len(long) < COMPRESS_FROM


def test_the_session_cookie_is_one_flasks_own_interface_reads(app):
    client = app.test_client()
    page = client.get(f"/en/{SLUG}/")
    assert page.status_code == 200
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    stock = SecureCookieSessionInterface().get_signing_serializer(app)
    assert type(stock) is URLSafeTimedSerializer
    session = stock.loads(cookie.value)
    assert len(session["csrf_token"]) == len(hashlib.sha1().hexdigest())
    # The form's token is that secret, signed as Flask-WTF signs it.
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.get_data(as_text=True))[1]
    stock_csrf = URLSafeTimedSerializer(app.config["WTF_CSRF_SECRET_KEY"], salt="wtf-csrf-token")
    assert stock_csrf.loads(token) == session["csrf_token"]


SESSION_VALUES = st.one_of(st.text(), st.binary(), st.tuples(st.text()), st.integers(), st.none())


@given(st.dictionaries(st.one_of(st.text(), st.sampled_from([" t", " di", " b", "csrf_token"])), SESSION_VALUES,
                       max_size=4))
def test_a_session_is_dumped_as_flasks_own_serializer_dumps_it(session):
    with Flask(__name__).app_context():
        assert SessionJSON().dumps(session) == TaggedJSONSerializer().dumps(session)
        assert SessionJSON().loads(SessionJSON().dumps(session)) == session


COOKIE_SETTINGS = st.fixed_dictionaries({
    "SESSION_COOKIE_SECURE": st.booleans(),
    "SESSION_COOKIE_HTTPONLY": st.booleans(),
    "SESSION_COOKIE_PARTITIONED": st.booleans(),
    "SESSION_COOKIE_SAMESITE": st.sampled_from([None, "Lax", "Strict", "None"]),
    "SESSION_COOKIE_DOMAIN": st.sampled_from([None, "union.example.org"]),
    "SESSION_COOKIE_PATH": st.sampled_from([None, "/", "/campaigns"]),
    "SESSION_COOKIE_NAME": st.sampled_from(["session", "clamor"]),
})


@given(st.dictionaries(st.text(), st.one_of(st.text(), st.text(max_size=3000), st.integers()), max_size=3),
       COOKIE_SETTINGS, st.booleans(), st.booleans(), st.sampled_from([None, "Accept-Encoding", "Cookie",
                                                                          "accept-encoding, cookie"]))
@example({"big": os.urandom(3000).hex()}, {}, False, True, None)
def test_the_session_cookie_header_is_the_one_flask_draws(data, settings, permanent, modified, vary):
    from flask import Response
    from flask.sessions import SecureCookieSession

    from app.security import SessionInterface

    app = Flask(__name__)
    app.secret_key = "a key"
    app.config.update(settings)

    def headers(interface):
        session = SecureCookieSession(data)
        session.permanent, session.modified, session.accessed = permanent, modified, True
        response = Response("page", headers={"Vary": vary} if vary else {})
        with app.test_request_context("/fr/campaign/"), warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            interface.save_session(app, session, response)
        cookies = response.headers.getlist("Set-Cookie")
        values = [re.match(r"[^=]*=([^;]*)", cookie)[1] for cookie in cookies]
        # The value is signed with the time, which may differ by a second: compared by what it holds.
        drawn = [cookie.replace(value, "VALUE", 1) for cookie, value in zip(cookies, values, strict=True)]
        # The expiry is the time plus the lifetime, so it may differ by a second too: compared within one below.
        expires = [parsedate_to_datetime(m[1]) for m in (re.search(r"Expires=([^;]*)", c) for c in drawn) if m]
        drawn = [re.sub(r"Expires=[^;]*", "Expires=DATE", cookie) for cookie in drawn]
        stock = SecureCookieSessionInterface().get_signing_serializer(app)
        loaded = [stock.loads(value) if value else value for value in values]
        # A cookie too large for browsers is drawn all the same, with Werkzeug's warning.
        return drawn, loaded, response.headers.get("Vary"), [str(w.message)[:40] for w in warned], expires

    *ours, our_expiry = headers(SessionInterface())
    *flasks, flasks_expiry = headers(SecureCookieSessionInterface())
    assert ours == flasks
    assert all(abs((a - b).total_seconds()) <= 1 for a, b in zip(our_expiry, flasks_expiry, strict=True))
