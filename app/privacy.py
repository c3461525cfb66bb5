"""Forgetting one person, and purging data no longer needed (``clamor forget``, ``clamor purge``).

A sent letter is a fact about the campaign, not about the supporter: when the
supporter's data goes, the Delivery row stays with only its campaign, target,
channel, status and time (``signature_id`` NULL), so "letters sent" stays true.
Everything else that could point to the person (unsent letters, confirmation
emails, which carry their address as the recipient) is deleted.
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, func, select, text, update

from . import states
from .extensions import db
from .models import Signature, utcnow

if TYPE_CHECKING:
    from .campaigns import Campaign

log = logging.getLogger(__name__)


def forget(email: str) -> int:
    """Remove every signature made with ``email`` (any case), in every campaign. Commits.

    Returns how many signatures were removed. The public counters go down by
    the accepted ones: the person asked not to be counted any more.
    """
    rows = db.session.execute(
        select(Signature.id, Signature.campaign, Signature.status).where(
            func.lower(Signature.email) == email.strip().lower()
        )
    ).all()
    states.forget(rows)
    db.session.commit()
    db.session.expire_all()
    return len(rows)


@dataclass
class PurgeReport:
    expired_unconfirmed: int = 0
    removed: int = 0
    letters_cleared: int = 0


def retention_ends(campaign: "Campaign", retention_days: int) -> datetime | None:
    """When ``campaign``'s supporters' data is due for purging, or None (open, or no ``closed_at``)."""
    if campaign.is_open or campaign.closed_at is None:
        return None
    return datetime.combine(campaign.closed_at, time()) + timedelta(days=retention_days)


#: Signatures removed (or letters cleared) per transaction by :func:`purge`.
#: On SQLite a transaction holds the database's one write lock, which every
#: signing request waits for, at most 30 s (busy_timeout): in one transaction,
#: purging 20,000 expired signatures of a million kept signing out for 89 s
#: (bench/web.py).
PURGE_CHUNK = 500


def purge(campaigns: "Mapping[str, Campaign]", config: Mapping[str, Any], now: datetime | None = None) -> PurgeReport:
    """Apply the retention rules and return a :class:`PurgeReport`. Commits, every PURGE_CHUNK signatures.

    - unconfirmed signatures older than ``CONFIRM_EXPIRY_DAYS`` are deleted;
    - ``RETENTION_DAYS`` after a closed campaign's ``closed_at``: supporters
      who did not opt in are deleted, and the letter text of those who did is
      cleared (their name, address and consent stay, for future alerts).

    Each transaction removes whole signatures, with their letters; a purge
    that stops half-way leaves the rest for the next run. The public counter
    is not lowered by the retention purge: a closed campaign keeps its final
    count.
    """
    now = now or utcnow()
    report = PurgeReport()
    report.expired_unconfirmed = _in_chunks(and_(
        Signature.status == states.SignatureStatus.UNCONFIRMED,
        Signature.created_at < now - timedelta(days=config["CONFIRM_EXPIRY_DAYS"]),
    ), states.remove)
    for campaign in campaigns.values():
        ends = retention_ends(campaign, config["RETENTION_DAYS"])
        if ends is None or ends > now:
            continue
        report.removed += _in_chunks(and_(Signature.campaign == campaign.slug, Signature.opt_in.is_(False)),
                                     states.remove)
        report.letters_cleared += _in_chunks(
            and_(Signature.campaign == campaign.slug, Signature.message != ""),
            lambda ids: db.session.execute(
                update(Signature).where(Signature.id.in_(ids)).values(message="", status_reason="", client_hash=""),
                execution_options={"synchronize_session": False},
            ),
        )
    db.session.expire_all()
    log.info("purge: %s", report)
    return report


def _in_chunks(condition: ColumnElement[bool], change: Callable[[list[int]], object]) -> int:
    """``change(ids)`` for the signatures meeting ``condition``, PURGE_CHUNK a transaction; how many changed."""
    ids = list(db.session.scalars(select(Signature.id).where(condition).order_by(Signature.id)))
    db.session.commit()
    changed = 0
    for start in range(0, len(ids), PURGE_CHUNK):
        chunk = _still_meeting(ids[start:start + PURGE_CHUNK], condition)
        change(chunk)
        db.session.commit()
        changed += len(chunk)
    return changed


def _still_meeting(ids: list[int], condition: ColumnElement[bool]) -> list[int]:
    """Those of ``ids`` that meet ``condition`` now, kept so until the transaction ends.

    Asked again just before the change: a signature may have been confirmed
    since the first read. And none may be confirmed between this read and
    the change, or its supporter would be told "confirmed" of letters purge
    then deletes: PostgreSQL locks the rows read (FOR UPDATE); SQLite, which
    has no row locks, gives this transaction its one write lock first (a
    confirmation waits for the commit, then finds nothing to confirm).
    """
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(text("BEGIN IMMEDIATE"))
    return list(db.session.scalars(select(Signature.id).where(Signature.id.in_(ids), condition).with_for_update()))
