"""The queue: claiming due deliveries with a lease, the hourly cap per target, pause and resume.

Every status a row takes here is set through :mod:`app.states`.
"""

import logging
import random
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, func, inspect, select
from sqlalchemy.orm.exc import StaleDataError

from .. import states
from ..extensions import db
from ..models import Delivery, DeliveryPause, utcnow

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


def _commit(deliveries):
    """Commit the outcomes of ``deliveries`` (one transaction: the letters that finished together).

    A letter deleted while it was being sent (``clamor forget``) has no row to
    take its outcome: the others are then committed one by one without it.
    """
    try:
        db.session.commit()
        return
    except StaleDataError:
        pass
    # The rollback forgets every change, so keep them first.
    changes = [(delivery, _changes(delivery)) for delivery in deliveries]
    db.session.rollback()
    for delivery, values in changes:
        if not _still_claimed(delivery, "while it was being sent"):
            continue
        for key, value in values.items():
            setattr(delivery, key, value)
        try:
            db.session.commit()
        except StaleDataError:
            db.session.rollback()
            log.info("delivery %s was deleted while it was being sent", inspect(delivery).identity[0])


def _changes(delivery):
    """The attributes of ``delivery`` changed since it was loaded, and their new values."""
    return {attr.key: attr.value for attr in inspect(delivery).attrs if attr.history.has_changes()}


def _wait_for_cap(delivery, config, hourly):
    """Put ``delivery`` back in the queue if its target had its hourly fill.

    Waiting is not a failed attempt: the claim's attempt is given back. Returns
    True when the letter waits.
    """
    cap = config["TARGET_HOURLY_CAP"] if delivery.kind == "letter" else 0  # a supporter's own email is not capped
    key = delivery.target_key
    if key not in hourly:
        hourly[key] = db.session.scalar(select(func.count()).where(sent_in_last_hour(key))) if cap else 0
    if not cap or hourly[key] < cap:
        return False
    oldest = db.session.scalar(select(func.min(Delivery.sent_at)).where(sent_in_last_hour(key))) or utcnow()
    states.waiting(delivery, oldest + timedelta(hours=1, seconds=1),
                   f"waiting: {key} had {hourly[key]} letters in the last hour (TARGET_HOURLY_CAP)")
    return True


def sent_in_last_hour(key: str) -> ColumnElement[bool]:
    """The WHERE clause of letters sent to ``key`` in the last hour (what TARGET_HOURLY_CAP counts)."""
    # Built only when a query needs it: building the expression costs more
    # than checking the batch's count.
    hour_ago = utcnow() - timedelta(hours=1)
    return (Delivery.target_key == key) & Delivery.status.in_(states.WENT_OUT) & (Delivery.sent_at > hour_ago)


#: Does this delivery's row still exist? A Core statement: four times cheaper
#: than the ORM query, once per letter.
_STILL_THERE = select(Delivery.__table__.c.id).where(Delivery.__table__.c.id == bindparam("id"))


def _still_claimed(delivery, when="before it was sent"):
    """False when ``delivery`` was deleted since the batch was claimed; it must not go out then.

    ``clamor forget`` deletes a supporter's unsent letters, in flight or not:
    one primary-key read per letter keeps the rest of a batch from sending
    them anyway.
    """
    delivery_id = inspect(delivery).identity[0]
    if db.session.execute(_STILL_THERE, {"id": delivery_id}).first() is not None:
        return True
    db.session.expunge(delivery)
    log.info("delivery %s was deleted %s; skipped", delivery_id, when)
    return False
