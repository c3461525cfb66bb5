"""The queue: claiming due deliveries with a lease, office hours and the hourly cap per target, pause and resume.

Every status a row takes here is set through :mod:`app.states`.
"""

import logging
import random
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func, inspect, select
from sqlalchemy.orm.attributes import NO_VALUE, set_committed_value

from .. import states
from ..extensions import db
from ..models import Delivery, DeliveryPause, utcnow
from ..office_hours import OfficeHours
from ..states import DeliveryStatus

# One logger for the whole package, named as before it was one.
log = logging.getLogger("app.delivery")


def retry_delay(attempts: int, config: Mapping[str, Any], retry_after: float | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failed try: full jitter, capped.

    A provider's ``retry_after`` is a floor, and so is one second (or the
    base, if smaller): a draw of ~0 would retry at once, hammering a server
    that just said "later".
    """
    base = config["DELIVERY_RETRY_BASE"]
    ceiling = min(config["DELIVERY_RETRY_CAP"], base * 2 ** max(attempts - 1, 0))
    delay = random.uniform(0, ceiling)
    return max(delay, min(1.0, base), retry_after or 0)


def claim_due(limit: int, lease_seconds: float) -> list[int]:
    """Atomically claim up to ``limit`` due deliveries, commit, and return their ids.

    The claim is :func:`app.states.claim`: a lease that ran out (its worker
    died) is due again.
    """
    ids = states.claim(limit, timedelta(seconds=lease_seconds), utcnow())
    db.session.commit()
    return ids


def is_paused() -> bool:
    """True while ``clamor deliveries pause`` is in force (needs an app context)."""
    return db.session.scalar(select(func.count()).select_from(DeliveryPause)) > 0


def set_paused(paused: bool) -> None:
    """Pause or resume delivery for every worker on this database, and commit."""
    if paused:
        if not is_paused():
            db.session.add(DeliveryPause())
    else:
        db.session.execute(delete(DeliveryPause))
    db.session.commit()


def _taken_changes(delivery):
    """(id, {column: new value}) of what was changed on the detached ``delivery``, which then holds them as committed.

    The batch's deliveries are detached from the session as soon as they are
    loaded (:func:`app.delivery.worker.deliver_due`): no query can flush a
    change onto a row (one a forget may have deleted), and each outcome is
    written once, by the writer (:mod:`app.delivery.commits`).
    """
    state = inspect(delivery)
    # Only the attributes set since the load can have changed: committed_state
    # holds their old values (NO_VALUE when none was loaded). Read straight
    # from the two dicts: state.attrs builds a view of all twenty attributes
    # per call, which cost as much as building the letter.
    old, new = state.committed_state, state.dict
    changes = {key: new[key] for key in list(old)
               if key in _COLUMNS and key in new and (old[key] is NO_VALUE or old[key] != new[key])}
    for key, value in changes.items():
        set_committed_value(delivery, key, value)
    return state.identity[0], changes


#: Delivery's column attributes, named as its table's columns.
_COLUMNS = frozenset(Delivery.__table__.c.keys())


def _wait_for_cap(delivery, config, hourly):
    """Put ``delivery`` back in the queue if its target had its hourly fill (a digest never waits).

    Waiting is not a failed attempt: the claim's attempt is given back. Returns
    True when the letter waits.
    """
    # A supporter's own email is not capped. A digest is counted (as one
    # letter) but never held back: the count is read for it too, or a letter
    # after it in the batch would start from 0.
    cap = config["TARGET_HOURLY_CAP"] if delivery.kind in states.TARGET_KINDS else 0
    key = delivery.target_key
    if key not in hourly:
        hourly[key] = db.session.scalar(select(func.count()).where(sent_in_last_hour(key))) if cap else 0
    if not cap or delivery.kind == "digest" or hourly[key] < cap:
        return False
    oldest = db.session.scalar(select(func.min(Delivery.sent_at)).where(sent_in_last_hour(key))) or utcnow()
    states.waiting(delivery, oldest + timedelta(hours=1, seconds=1),
                   f"waiting: {key} had {hourly[key]} letters in the last hour (TARGET_HOURLY_CAP)", capped=True)
    return True


#: How a wait's note begins: a letter whose note says so was given its turn (see :func:`_wait_for_office_hours`).
WAIT_NOTE = "waiting: "


def _wait_for_office_hours(delivery, state, config, turns):
    """Put ``delivery`` back in the queue until its turn if its target has office hours; True when it waits.

    A target with office hours gets at most one letter every 3600 /
    TARGET_HOURLY_CAP seconds, and only inside its hours: each letter that
    cannot go now is given the next free turn (``turns``: target key -> the
    earliest moment the next new letter may go, read from the database
    once a batch), so a backlog leaves one letter at a time from the
    opening on instead of all at once. A letter whose turn comes goes, if
    the office is open. Waiting is not a failed attempt.
    """
    hours = office_hours_of(state, delivery)
    if hours is None:
        return False
    now, key = utcnow(), delivery.target_key
    cap = config["TARGET_HOURLY_CAP"]
    spacing = timedelta(seconds=3600 / cap if cap else 0)
    if key not in turns:
        turns[key] = _next_free_turn(key, spacing, now)
    has_turn = (delivery.note or "").startswith(WAIT_NOTE)
    if hours.is_open(now) and (has_turn or turns[key] <= now):
        turns[key] = max(turns[key], now + spacing)
        return False
    turn = hours.next_opening(max(turns[key], now))
    turns[key] = turn + spacing
    if not hours.is_open(now):
        note = f"{WAIT_NOTE}outside {hours}"
    else:
        note = f"{WAIT_NOTE}one letter every {spacing.total_seconds():.0f}s to {key} within {hours}"
    states.waiting(delivery, turn, note)
    return True


def office_hours_of(state: Any, delivery: Delivery) -> "OfficeHours | None":
    """The office hours of ``delivery``'s target; None for a target without them and for mail that is no letter.

    Mail to a supporter's own mailbox and to organisers is never held; a digest is.
    """
    campaign = state.campaigns.get(delivery.campaign) if delivery.kind in states.TARGET_KINDS else None
    target = campaign.target(delivery.target_key) if campaign else None
    return target.hours if target else None


def _next_free_turn(key, spacing, now):
    """The earliest moment a new letter to ``key`` may go: after the last one sent, and the last one given a turn."""
    last_sent = db.session.scalar(
        select(func.max(Delivery.sent_at)).where((Delivery.target_key == key) & Delivery.status.in_(states.WENT_OUT)))
    # Letters waiting for their turn: pending, never tried (a wait gives its attempt back), due later.
    last_turn = db.session.scalar(select(func.max(Delivery.next_attempt_at)).where(
        (Delivery.target_key == key) & (Delivery.status == DeliveryStatus.PENDING) & (Delivery.attempts == 0)
        & (Delivery.next_attempt_at > now)))
    return max([now] + [moment + spacing for moment in (last_sent, last_turn) if moment is not None])


def hourly_counts(batch: list[Delivery], config: Mapping[str, Any]) -> dict[str, int]:
    """Target key -> letters it received in the last hour, for the capped targets of ``batch``: one query.

    What :func:`_wait_for_cap` would otherwise ask target by target (a
    fifth of a batch's own time with five targets), counted as
    :func:`sent_in_last_hour` counts. Empty when there is no cap.
    """
    keys = {delivery.target_key for delivery in batch if delivery.kind in states.TARGET_KINDS}
    if not config["TARGET_HOURLY_CAP"] or not keys:
        return {}
    hour_ago = utcnow() - timedelta(hours=1)
    counts = dict(db.session.execute(
        select(Delivery.target_key, func.count()).where(
            Delivery.target_key.in_(keys) & Delivery.status.in_(states.WENT_OUT) & (Delivery.sent_at > hour_ago)
            # As sent_in_last_hour: a digest counts as one letter, the letters in it not at all.
            & Delivery.digest_id.is_(None))
        .group_by(Delivery.target_key)).all())
    return {key: counts.get(key, 0) for key in keys}


def sent_in_last_hour(key: str) -> ColumnElement[bool]:
    """The WHERE clause of letters sent to ``key`` in the last hour (what TARGET_HOURLY_CAP counts).

    A digest counts as one letter: the letters in it (``digest_id`` set) do not count.
    """
    # Built only when a query needs it: building the expression costs more
    # than checking the batch's count.
    hour_ago = utcnow() - timedelta(hours=1)
    return ((Delivery.target_key == key) & Delivery.status.in_(states.WENT_OUT) & (Delivery.sent_at > hour_ago)
            & Delivery.digest_id.is_(None))


class _Presence:
    """Which letters of a batch still have their row: one query for the next few letters, trusted briefly.

    ``clamor forget`` deletes a supporter's unsent letters, in flight or not,
    and a deleted letter must not go out. A primary-key read per letter was
    a tenth of a letter's cost; one read answers for the next
    :attr:`CHUNK` letters, for at most :attr:`FRESH` seconds. A forget that
    commits within that time of the read can still let one of those letters
    go, as it could between a per-letter read and the send; a letter that
    waits longer (a slow server) is read again.
    """

    CHUNK = 32
    FRESH = 0.05

    def __init__(self, batch):
        self.ids = [inspect(delivery).identity[0] for delivery in batch]
        self.position = {delivery_id: n for n, delivery_id in enumerate(self.ids)}
        self.checked, self.present, self.checked_at = set(), set(), 0.0

    def still_claimed(self, delivery, again=False):
        """False when ``delivery`` was deleted since the batch was claimed.

        ``again``: read its row now, whatever was read before.
        """
        delivery_id = inspect(delivery).identity[0]
        if again or delivery_id not in self.checked or time.monotonic() - self.checked_at > self.FRESH:
            start = self.position[delivery_id]
            self.checked = set(self.ids[start:start + self.CHUNK])
            self.present = set(db.session.scalars(_PRESENT, {"ids": list(self.checked)}))
            self.checked_at = time.monotonic()
        if delivery_id in self.present:
            return True
        log.info("delivery %s was deleted before it was sent; skipped", delivery_id)
        return False


_PRESENT = select(Delivery.__table__.c.id).where(Delivery.__table__.c.id.in_(bindparam("ids", expanding=True)))
