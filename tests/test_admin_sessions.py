"""Admin sessions kept on the server, their timeouts, login throttling, password hashes, paging.

Time is moved by editing the rows' timestamps, never by sleeping.
"""

import hashlib
import re
import time
from datetime import timedelta

import pytest
from conftest import ORGANISER, PASSWORD, SLUG, add_organiser, csrf_token, login, sign
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, inspect, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from app import admin, models
from app.extensions import db, limiter
from app.models import Organiser, utcnow

SUPPORTERS = f"/admin/{SLUG}/supporters"


def session_rows(app, email=None):
    """Every stored admin session (or only ``email``'s)."""
    with app.app_context():
        query = select(models.AdminSession)
        if email:
            query = query.join(Organiser).where(Organiser.email == email)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return rows


def move_sessions(app, **values):
    """Set columns of every stored admin session, e.g. ``last_seen_at=utcnow() - timedelta(hours=1)``."""
    with app.app_context():
        db.session.execute(update(models.AdminSession).values(**values))
        db.session.commit()


def organiser_row(app, email=ORGANISER):
    with app.app_context():
        organiser = db.session.scalar(select(Organiser).where(Organiser.email == email))
        db.session.expunge_all()
        return organiser


def cookie_data(app, client):
    """What the Flask session cookie of ``client`` says (it is signed, not encrypted)."""
    value = client.get_cookie("session").value
    return app.session_interface.get_signing_serializer(app).loads(value)


def shows_supporters(response):
    return response.status_code == 200 and "anna@example.org" in response.get_data(as_text=True)


def sent_to_login(response):
    return (response.status_code == 302 and response.headers["Location"].startswith("/admin/login")
            and "anna@example.org" not in response.get_data(as_text=True))


@pytest.mark.slow
def test_a_session_cookie_copied_before_logout_opens_nothing_after_it(app, client):
    sign(client, email="anna@example.org")
    add_organiser(app)
    assert login(client).status_code == 303
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    assert shows_supporters(thief.get(SUPPORTERS))
    assert client.post("/admin/logout", data={"csrf_token": csrf_token(client)}).status_code == 303
    assert sent_to_login(thief.get(SUPPORTERS))
    assert sent_to_login(client.get(SUPPORTERS))
    assert session_rows(app) == []


@pytest.mark.slow
def test_the_cookie_holds_a_random_id_and_the_database_only_its_hash(app, client):
    add_organiser(app)
    login(client)
    data = cookie_data(app, client)
    assert "organiser_id" not in data
    token = data["admin_session"]
    assert len(token) >= 43  # 32 random bytes, URL-safe base64
    [row] = session_rows(app)
    assert row.id_hash == hashlib.sha256(token.encode()).hexdigest()
    # Someone who reads the database and can sign cookies still cannot use what is stored.
    forged = app.test_client()
    forged.set_cookie("session", app.session_interface.get_signing_serializer(app).dumps(
        {"admin_session": row.id_hash}))
    assert sent_to_login(forged.get(SUPPORTERS))
    assert len(session_rows(app)) == 1


@pytest.mark.slow
def test_removing_an_organiser_ends_their_sessions_at_once(app, client):
    sign(client, email="anna@example.org")
    add_organiser(app)
    login(client)
    assert shows_supporters(client.get(SUPPORTERS))
    assert len(session_rows(app)) == 1
    assert app.test_cli_runner().invoke(args=["admin", "remove", ORGANISER]).exit_code == 0
    assert session_rows(app) == []
    assert sent_to_login(client.get(SUPPORTERS))


@pytest.mark.slow
def test_logout_all_ends_every_session_of_one_organiser(app):
    add_organiser(app)
    add_organiser(app, "other@union.test")
    laptop, phone, other = app.test_client(), app.test_client(), app.test_client()
    login(laptop), login(phone), login(other, "other@union.test")
    assert len(session_rows(app)) == 3
    result = app.test_cli_runner().invoke(args=["admin", "logout-all", ORGANISER.upper()])
    assert result.exit_code == 0 and "ended 2 session(s)" in result.output
    assert laptop.get("/admin/").status_code == 302 and phone.get("/admin/").status_code == 302
    assert other.get("/admin/").status_code == 200
    assert [r.organiser_id for r in session_rows(app)] == [organiser_row(app, "other@union.test").id]
    assert app.test_cli_runner().invoke(args=["admin", "logout-all", "nobody@union.test"]).exit_code != 0


@pytest.mark.slow
def test_a_new_password_ends_the_sessions_open_with_the_old_one_and_the_wait(app, client):
    add_organiser(app)
    login(client)
    with app.app_context():
        db.session.execute(update(Organiser).values(failed_logins=9, locked_until=utcnow() + timedelta(minutes=5)))
        db.session.commit()
    result = app.test_cli_runner().invoke(args=["admin", "add", ORGANISER], input="a new password\na new password\n")
    assert result.exit_code == 0 and "ended 1 open session(s)" in result.output
    assert client.get("/admin/").status_code == 302
    assert session_rows(app) == []
    organiser = organiser_row(app)
    assert (organiser.failed_logins, organiser.locked_until) == (0, None)
    assert login(client, password="a new password").status_code == 303


@pytest.mark.slow
@pytest.mark.parametrize("setting", [None, 10])
def test_an_idle_session_ends(make_app, setting):
    app = make_app(**({} if setting is None else {"ADMIN_SESSION_IDLE_MINUTES": setting}))
    idle = setting or 60
    client = app.test_client()
    sign(client, email="anna@example.org")
    add_organiser(app)
    login(client)
    # Seen half a minute ago: not written again (at most one write a minute).
    seen = utcnow() - timedelta(seconds=30)
    move_sessions(app, last_seen_at=seen)
    assert shows_supporters(client.get(SUPPORTERS))
    assert session_rows(app)[0].last_seen_at == seen
    # Seen a minute short of the limit: still open, and the time is moved on.
    move_sessions(app, last_seen_at=utcnow() - timedelta(minutes=idle - 1))
    before = utcnow()
    assert shows_supporters(client.get(SUPPORTERS))
    assert session_rows(app)[0].last_seen_at >= before
    # Idle a minute past the limit: sent to the login page, and the row is gone.
    move_sessions(app, last_seen_at=utcnow() - timedelta(minutes=idle + 1))
    response = client.get(SUPPORTERS)
    assert sent_to_login(response)
    assert "next=" in response.headers["Location"]
    assert session_rows(app) == []
    assert sent_to_login(client.get(SUPPORTERS))


@pytest.mark.slow
def test_a_session_ends_after_its_lifetime_however_busy(app, client):
    sign(client, email="anna@example.org")
    add_organiser(app)
    login(client)
    move_sessions(app, created_at=utcnow() - timedelta(hours=12) + timedelta(minutes=1), last_seen_at=utcnow())
    assert shows_supporters(client.get(SUPPORTERS))
    move_sessions(app, created_at=utcnow() - timedelta(hours=12, minutes=1), last_seen_at=utcnow())
    assert sent_to_login(client.get(SUPPORTERS))
    assert session_rows(app) == []


@pytest.mark.slow
def test_a_new_login_ends_the_session_the_browser_had(app, client):
    add_organiser(app)
    login(client)
    first = cookie_data(app, client)["admin_session"]
    login(client)
    second = cookie_data(app, client)["admin_session"]
    assert first != second
    assert [r.id_hash for r in session_rows(app)] == [hashlib.sha256(second.encode()).hexdigest()]


def error_of(response):
    """The error paragraph(s) of the login page."""
    return re.findall(r'<p class="form-error[^"]*"[^>]*>.*?</p>', response.get_data(as_text=True), re.S)


@pytest.mark.slow
def test_failed_logins_slow_one_account_down_and_a_stranger_cannot_lock_it_out(make_app):
    app = make_app(RATELIMIT_ENABLED=True)
    with app.app_context():
        limiter.reset()
    add_organiser(app)
    stranger = app.test_client()
    wrong = None
    # Five wrong passwords, each from another address (the per-address limit never bites): no wait yet.
    for i in range(5):
        wrong = login(stranger, password="guess", environ_base={"REMOTE_ADDR": f"198.51.100.{i}"})
        assert wrong.status_code == 401
        assert organiser_row(app).locked_until is None
    assert organiser_row(app).failed_logins == 5
    unknown = login(stranger, "nobody@union.test", password="guess", environ_base={"REMOTE_ADDR": "198.51.100.50"})

    def failing(address, expected_wait):
        before = utcnow()
        response = login(stranger, password="guess", environ_base={"REMOTE_ADDR": address})
        after = utcnow()
        assert response.status_code == 401
        locked_until = organiser_row(app).locked_until
        assert before + timedelta(seconds=expected_wait) <= locked_until <= after + timedelta(seconds=expected_wait)

    failing("198.51.100.6", 1)  # the 6th failure: 1 second

    def lock_for(seconds):
        with app.app_context():
            db.session.execute(update(Organiser).values(locked_until=utcnow() + timedelta(seconds=seconds)))
            db.session.commit()

    # While the account waits (a second is too short to test without a race:
    # make it a minute), even the right password is not checked, and the
    # answer is the one a wrong password gets.
    lock_for(60)
    own = app.test_client()
    waiting = login(own, environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert waiting.status_code == 401
    assert error_of(waiting) == error_of(wrong) == error_of(unknown) != []
    assert own.get("/admin/").status_code == 302
    assert organiser_row(app).failed_logins == 6  # an attempt not checked is not counted

    def wait_passes():
        lock_for(-1)

    wait_passes()
    failing("198.51.100.7", 2)  # the 7th: 2 seconds
    wait_passes()
    failing("198.51.100.8", 4)  # the 8th: 4 seconds
    # The wait doubles up to five minutes.
    with app.app_context():
        db.session.execute(update(Organiser).values(failed_logins=20, locked_until=None))
        db.session.commit()
    failing("198.51.100.9", 300)
    # Once the wait is over the organiser logs in from their own address, and the count starts again.
    wait_passes()
    assert login(own, environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 303
    assert own.get("/admin/").status_code == 200
    organiser = organiser_row(app)
    assert (organiser.failed_logins, organiser.locked_until) == (0, None)
    with app.app_context():
        limiter.reset()


@pytest.mark.slow
def test_the_per_address_limit_still_answers_429_and_is_not_keyed_by_the_address(make_app):
    app = make_app(RATELIMIT_ENABLED=True)
    with app.app_context():
        limiter.reset()
    add_organiser(app)
    client = app.test_client()
    here = {"REMOTE_ADDR": "203.0.113.77"}
    for i in range(5):
        assert login(client, f"guess{i}@union.test", password="guess", environ_base=here).status_code == 401
    # The sixth try from that address is refused before anything is checked, right password or not.
    assert login(client, environ_base=here).status_code == 429
    assert login(client, environ_base={"REMOTE_ADDR": "203.0.113.78"}).status_code == 303
    with app.app_context():
        storage = limiter.storage
        keys = " ".join([*getattr(storage, "storage", {}), *getattr(storage, "events", {})])
        assert keys, "the limiter stored nothing: this test would prove nothing"
        assert "203.0.113.77" not in keys
        limiter.reset()


@pytest.mark.slow
def test_passwords_are_hashed_with_scrypt_at_owasp_cost_and_old_hashes_are_upgraded(app, client):
    assert admin.PASSWORD_METHOD == "scrypt:131072:8:1"
    add_organiser(app)
    assert organiser_row(app).password_hash.startswith("scrypt:131072:8:1$")
    old = generate_password_hash(PASSWORD, method="scrypt:32768:8:1")
    with app.app_context():
        db.session.execute(update(Organiser).values(password_hash=old))
        db.session.commit()
    assert login(client, password="not it").status_code == 401
    assert organiser_row(app).password_hash == old
    assert login(client).status_code == 303
    upgraded = organiser_row(app).password_hash
    assert upgraded.startswith("scrypt:131072:8:1$") and check_password_hash(upgraded, PASSWORD)


@pytest.mark.slow
def test_an_unknown_address_costs_the_same_hash_as_a_wrong_password(app, client):
    # The dummy hash has the parameters of a real one, so it takes as long.
    assert admin._DUMMY_HASH.split("$")[0] == admin.PASSWORD_METHOD
    assert not check_password_hash(admin._DUMMY_HASH, "")
    add_organiser(app)
    started = time.perf_counter()
    assert login(client, password="guess").status_code == 401
    wrong_password = time.perf_counter() - started
    started = time.perf_counter()
    assert login(client, "nobody@union.test", password="guess").status_code == 401
    unknown_address = time.perf_counter() - started
    # Generous: a missing hash would be a hundred times faster, not half.
    assert unknown_address > wrong_password / 2, (unknown_address, wrong_password)


@pytest.mark.slow
def test_any_page_address_gives_a_page(app, client):
    sign(client, email="anna@example.org")
    add_organiser(app)
    login(client)
    for key in ("before", "after"):
        for value in ["9223372036854775808", str(10**30), "2", "0", "-5", "abc"]:
            response = client.get(SUPPORTERS, query_string={key: value})
            assert response.status_code in (200, 302), (key, value)
            response = client.get(SUPPORTERS, query_string={key: value}, follow_redirects=True)
            assert shows_supporters(response), (key, value)
            # Past either end: the newest page, not an empty one.
            assert "Anna Example" in response.get_data(as_text=True), (key, value)


def schema(app):
    with app.app_context():
        inspector = inspect(db.engine)
        tables = set(inspector.get_table_names())

        def columns(table):
            return {c["name"] for c in inspector.get_columns(table)}

        return {
            "admin_session": columns("admin_session") if "admin_session" in tables else None,
            "organiser": columns("organiser"),
        }


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_migration_adds_sessions_and_throttling_and_goes_back(make_app, request, database):
    overrides = {}
    if database == "postgresql":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("postgres_cluster")()
    app = make_app(**overrides)
    upgraded = schema(app)
    assert upgraded["admin_session"] == {"id_hash", "organiser_id", "created_at", "last_seen_at"}
    assert {"failed_logins", "locked_until"} <= upgraded["organiser"]
    # Back down with an open session and a throttled organiser in the tables.
    add_organiser(app)
    client = app.test_client()
    assert login(client, password="guess").status_code == 401
    assert login(client).status_code == 303
    directory = app.extensions["migrate"].directory
    with app.app_context():
        downgrade(directory=directory, revision="55f281023dea")
    assert schema(app)["admin_session"] is None
    assert not {"failed_logins", "locked_until"} & schema(app)["organiser"]
    # Up again: the organiser is still there, with a count of zero.
    with app.app_context():
        upgrade(directory=directory)
    assert schema(app) == upgraded
    assert organiser_row(app).failed_logins == 0
    # The session from before is gone (it was a row); logging in again works on this database.
    assert sent_to_login(client.get("/admin/"))
    assert login(client).status_code == 303
    assert client.get("/admin/").status_code == 200
    assert client.post("/admin/logout", data={"csrf_token": csrf_token(client)}).status_code == 303
    assert client.get("/admin/").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(models.AdminSession)) == 0
