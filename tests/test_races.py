"""Two writers on one row at once: a double click on confirm, a confirmation during a purge, one bounce read twice.

Each test stages the interleaving itself (a second app context is a second
request's session; a second database connection is another process), so
the outcome is the same on every run.
"""

import sqlite3
from datetime import timedelta

import psycopg
import pytest
from conftest import form_fields
from sqlalchemy import event, select, update
from test_states import letters, signature_counts, store

from app import privacy, states
from app.delivery import Receipt
from app.extensions import db
from app.models import Delivery, Signature, TargetHealth, utcnow
from app.signing import confirm_signature
from app.tokens import make_token


def test_a_double_click_on_confirm_counts_the_signature_once(app):
    with app.app_context():
        signature_id = store(app, states.await_confirmation)
        # The first click's request has read the signature, unconfirmed ...
        first_click = db.session.get(Signature, signature_id)
        with app.app_context():
            # ... when the second click's request confirms it and commits.
            assert confirm_signature(db.session.get(Signature, signature_id)) is True
        assert confirm_signature(first_click) is False
        db.session.expire_all()
        assert signature_counts() == (1, 1, 0, 0)
        assert set(letters(signature_id)) == {"pending"}


def test_a_confirmation_of_a_signature_purge_removed_meanwhile_changes_nothing(app):
    with app.app_context():
        signature_id = store(app, states.await_confirmation)
        late_click = db.session.get(Signature, signature_id)
        with app.app_context():
            states.remove([signature_id])
            db.session.commit()
        assert confirm_signature(late_click) is False
        db.session.commit()
        assert signature_counts() == (0, 0, 0, 0)
        assert db.session.scalars(select(Signature)).all() == []


def test_a_click_on_confirm_that_purge_beat_gets_the_unknown_link_page(app):
    with app.app_context():
        signature_id = store(app, states.await_confirmation)
        link = f"/fr/confirm/{make_token(db.session.get(Signature, signature_id), 'confirm')}"
        path = db.engine.url.database
    client = app.test_client()
    token = form_fields(client.get(link).get_data(as_text=True))["csrf_token"]

    def purge_first(connection, cursor, statement, parameters, *rest):
        # The request has read the signature; a purge in another process removes it now.
        if statement.startswith("UPDATE signature SET status"):
            other = sqlite3.connect(path)
            other.execute("DELETE FROM delivery WHERE signature_id = ?", (signature_id,))
            other.execute("DELETE FROM signature WHERE id = ?", (signature_id,))
            other.commit()
            other.close()

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", purge_first)
    try:
        response = client.post(link, data={"csrf_token": token})
    finally:
        with app.app_context():
            event.remove(db.engine, "before_cursor_execute", purge_first)
    assert response.status_code == 404
    with app.app_context():
        assert signature_counts() == (0, 0, 0, 0)


def read_then_bounced_elsewhere(app):
    """A sent letter, as this request read it, after another request bounced it and committed."""
    store(app, states.accept)
    [letter_id, *_] = states.claim(100, timedelta(minutes=5), utcnow())
    db.session.commit()
    states.sent(db.session.get(Delivery, letter_id), Receipt())
    db.session.commit()
    read = db.session.get(Delivery, letter_id)
    assert read.status == "sent"
    with app.app_context():
        assert states.bounced(db.session.get(Delivery, letter_id), "550 no such user") is True
        db.session.commit()
    return read


def test_one_bounce_read_by_two_pollers_at_once_counts_once(app):
    # Two delivery threads (one per gunicorn worker) fetch the same bounce from the mailbox.
    with app.app_context():
        first = read_then_bounced_elsewhere(app)
        letter_id = first.id
        assert states.bounced(first, "550 no such user") is False
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Delivery, letter_id).status == "bounced"
        assert db.session.get(TargetHealth, first.target_key).bounces_in_row == 1


def test_a_delivered_report_racing_a_bounce_never_undoes_it(app):
    # Two webhook calls in two workers: "delivered" read the letter sent, then the bounce was committed.
    with app.app_context():
        late = read_then_bounced_elsewhere(app)
        letter_id = late.id
        assert states.delivered(late, "250 delivered") is False
        db.session.commit()
        db.session.expire_all()
        letter = db.session.get(Delivery, letter_id)
        assert (letter.status, letter.note) == ("bounced", "250 delivered")
        assert db.session.get(TargetHealth, letter.target_key).bounces_in_row == 1


def expired(app, n=3):
    """``n`` unconfirmed signatures, each created past CONFIRM_EXPIRY_DAYS; their ids."""
    ids = [store(app, states.await_confirmation, email=f"late{i}@example.org") for i in range(n)]
    db.session.execute(update(Signature).where(Signature.id.in_(ids)).values(created_at=utcnow() - timedelta(days=30)))
    db.session.commit()
    return ids


def purge_confirming_on_the_way(app, confirm):
    """Run purge; just before it changes its first chunk, ``confirm()`` the last signature from elsewhere.

    Returns what ``confirm`` returned: True when its write went through, False
    when it was kept waiting (it would then run after the purge's commit).
    """
    tried = []

    def before(connection, cursor, statement, parameters, *rest):
        # The purge's first change to a chunk is to its letters (states.remove).
        if not tried and statement.startswith("DELETE FROM delivery"):
            tried.append(confirm())

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        privacy.purge(app.extensions["clamor"].campaigns, app.config)
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
    assert len(tried) == 1
    return tried[0]


def assert_a_confirmed_signature_stays(went_through, ids):
    """Either the confirmation waited for the purge, or its signature stayed, with its letters, due now."""
    db.session.expire_all()
    left = set(db.session.scalars(select(Signature.id)))
    if went_through:
        assert left == {ids[-1]}
        assert set(letters(ids[-1])) == {"pending"}
    else:
        assert left == set()
    # Whichever came first, nothing was half done: no letter without its signature.
    assert all(letters(signature_id) == [] for signature_id in ids if signature_id not in left)


CONFIRM = ("UPDATE signature SET status = 'accepted' WHERE id = {0} AND status = 'unconfirmed'",
           "UPDATE delivery SET status = 'pending' WHERE signature_id = {0}")


def test_purge_keeps_a_signature_confirmed_while_it_runs_on_sqlite(app):
    with app.app_context():
        ids = expired(app)

        def confirm():
            # Another process (a web worker): it takes the write lock if it can, without waiting.
            other = sqlite3.connect(db.engine.url.database, timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                assert "locked" in str(exc)
                return False
            try:
                for statement in CONFIRM:
                    other.execute(statement.format(ids[-1]))
                other.commit()
            finally:
                other.close()
            return True

        went_through = purge_confirming_on_the_way(app, confirm)
        assert_a_confirmed_signature_stays(went_through, ids)
        # The purge took SQLite's write lock before it read the chunk again: the confirmation had to wait.
        assert went_through is False


@pytest.mark.postgres
def test_purge_keeps_a_signature_confirmed_while_it_runs_on_postgresql(postgres_cluster, make_app):
    app = make_app(SQLALCHEMY_DATABASE_URI=postgres_cluster())
    with app.app_context():
        ids = expired(app)
        dsn = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

        def confirm():
            with psycopg.connect(dsn) as other:
                other.execute("SET lock_timeout = '200ms'")
                try:
                    for statement in CONFIRM:
                        other.execute(statement.format(ids[-1]))
                except psycopg.errors.LockNotAvailable:
                    other.rollback()
                    return False
            return True

        went_through = purge_confirming_on_the_way(app, confirm)
        assert_a_confirmed_signature_stays(went_through, ids)
        # The purge locked the chunk's rows (FOR UPDATE) when it read them again.
        assert went_through is False
