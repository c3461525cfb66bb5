"""Organisers' sessions and passwords: hashing, the login throttle, opening and ending sessions.

Sessions live on the server (:class:`app.models.AdminSession`): the browser's
cookie holds only a random id, and a session ends, whatever the reason
(logout, ``clamor admin remove`` / ``logout-all``, idle for
``ADMIN_SESSION_IDLE_MINUTES``, older than ``ADMIN_SESSION_MAX_HOURS``), by
:func:`end_sessions` deleting its row. A copied cookie dies with it.

Logins are limited per client address (Flask-Limiter, keyed by a hash of the
address, in :mod:`app.admin`) and slowed down per account: after five wrong
passwords in a row each further one makes the account wait longer before
another attempt is checked (:func:`login_wait`), so that a stranger can slow an
organiser down but not lock them out for long, nor guess quickly.
"""

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, delete, or_, update
from werkzeug.security import generate_password_hash

from .extensions import db
from .models import AdminSession, Organiser, utcnow

log = logging.getLogger(__name__)

#: How organisers' passwords are hashed (werkzeug's method string): scrypt at
#: the cost OWASP recommends, N=2**17, r=8, p=1 (128 MiB, a few tenths of a
#: second). A stored hash with other parameters is replaced at the next login.
PASSWORD_METHOD = "scrypt:131072:8:1"

#: A werkzeug hash of nothing anyone types, with the parameters of a real one,
#: checked when no password is: a wrong address (or an account that must wait)
#: takes as long as a wrong password.
DUMMY_HASH = PASSWORD_METHOD + "$clamor$" + "0" * 128

#: Wrong passwords in a row an account may have before each further one makes it wait.
FREE_FAILURES = 5

#: The longest wait (seconds) an account is made to take between two checked attempts.
MAX_LOGIN_WAIT = 300

#: last_seen_at is written at most this often, not on every request.
_SEEN_EVERY = timedelta(minutes=1)


def hash_password(password: str) -> str:
    """The hash to store for ``password`` (:data:`PASSWORD_METHOD`)."""
    return generate_password_hash(password, method=PASSWORD_METHOD)


def login_wait(failures: int) -> int:
    """Seconds an account waits after its ``failures``-th wrong password in a row.

    0 for the first :data:`FREE_FAILURES`; then 1 (the 6th), 2, 4, 8 … up to
    :data:`MAX_LOGIN_WAIT`.
    """
    if failures <= FREE_FAILURES:
        return 0
    return min(2 ** min(failures - FREE_FAILURES - 1, 16), MAX_LOGIN_WAIT)


def session_id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(organiser: Organiser) -> str:
    """Store a new session for ``organiser``; returns the random id for the cookie (the caller commits)."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(AdminSession(id_hash=session_id_hash(session_id), organiser_id=organiser.id, created_at=now,
                                last_seen_at=now))
    return session_id


def end_sessions(*conditions: ColumnElement[bool]) -> int:
    """End every session matching ``conditions`` by deleting its row; returns how many (the caller commits).

    The only way a session ends: logout, removing an organiser, ``logout-all``
    and expiry all come here.
    """
    if not conditions:
        raise TypeError("end_sessions() needs a condition; it would end every session")
    result = db.session.execute(delete(AdminSession).where(*conditions),
                                execution_options={"synchronize_session": False})
    return result.rowcount


def _limits(now):
    """(oldest last_seen_at, oldest created_at) a session may have at ``now`` and still be live."""
    config = current_app.config
    return (now - timedelta(minutes=config["ADMIN_SESSION_IDLE_MINUTES"]),
            now - timedelta(hours=config["ADMIN_SESSION_MAX_HOURS"]))


def expired_sessions(now: datetime | None = None) -> ColumnElement[bool]:
    """SQL condition: the sessions idle too long or too old at ``now``."""
    idle, oldest = _limits(now or utcnow())
    return or_(AdminSession.last_seen_at < idle, AdminSession.created_at < oldest)


def session_organiser(session_id: str) -> Organiser | None:
    """The organiser whose live session has the cookie id ``session_id``, or None.

    A session found expired is ended here. Its ``last_seen_at`` moves on when
    it is a minute old or more, so a page view rarely writes.
    """
    id_hash = session_id_hash(session_id)
    record = db.session.get(AdminSession, id_hash)
    if record is None:
        return None
    organiser = record.organiser
    now = utcnow()
    idle, oldest = _limits(now)
    if record.last_seen_at < idle or record.created_at < oldest:
        log.info("session of organiser %s expired", organiser.email)
        end_sessions(AdminSession.id_hash == id_hash)
        db.session.commit()
        return None
    if now - record.last_seen_at >= _SEEN_EVERY:
        # A statement, not the ORM: a logout in another tab may have deleted the row meanwhile.
        db.session.execute(update(AdminSession).where(AdminSession.id_hash == id_hash).values(last_seen_at=now),
                           execution_options={"synchronize_session": False})
        db.session.commit()
    return organiser


def claim_attempt(organiser: Organiser) -> bool:
    """Count this attempt as a wrong password before it is checked; False if the account must wait.

    Counting first, with a compare-and-set on the count, means that attempts
    sent in parallel cannot all be checked in the moment between reading the
    count and writing it: the ones that lose the race are refused like a
    waiting account. A correct password resets the count afterwards.
    """
    now = utcnow()
    failures = organiser.failed_logins + 1
    wait = login_wait(failures)
    claimed = db.session.execute(
        update(Organiser)
        .where(Organiser.id == organiser.id, Organiser.failed_logins == organiser.failed_logins,
               or_(Organiser.locked_until.is_(None), Organiser.locked_until <= now))
        .values(failed_logins=failures, locked_until=now + timedelta(seconds=wait) if wait else None),
        execution_options={"synchronize_session": False},
    ).rowcount == 1
    db.session.commit()
    return claimed
