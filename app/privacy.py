"""Forgetting one person, and purging data no longer needed (``clamor forget``, ``clamor purge``).

A sent letter is a fact about the campaign, not about the supporter: when the
supporter's data goes, the Delivery row stays with only its campaign, target,
channel, status and time (``signature_id`` NULL), so "letters sent" stays true.
Everything else that could point to the person (unsent letters, confirmation
emails, which carry their address as the recipient) is deleted.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

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


def purge(campaigns: "Mapping[str, Campaign]", config: Mapping[str, Any], now: datetime | None = None) -> PurgeReport:
    """Apply the retention rules and return a :class:`PurgeReport`. Commits.

    - unconfirmed signatures older than ``CONFIRM_EXPIRY_DAYS`` are deleted;
    - ``RETENTION_DAYS`` after a closed campaign's ``closed_at``: supporters
      who did not opt in are deleted, and the letter text of those who did is
      cleared (their name, address and consent stay, for future alerts).

    The public counter is not lowered by the retention purge: a closed
    campaign keeps its final count.
    """
    now = now or utcnow()
    report = PurgeReport()
    report.expired_unconfirmed = states.expire_unconfirmed(now - timedelta(days=config["CONFIRM_EXPIRY_DAYS"]))
    for campaign in campaigns.values():
        ends = retention_ends(campaign, config["RETENTION_DAYS"])
        if ends is None or ends > now:
            continue
        gone = list(db.session.scalars(
            select(Signature.id).where(Signature.campaign == campaign.slug, Signature.opt_in.is_(False))
        ))
        states.remove(gone)
        report.removed += len(gone)
        result = db.session.execute(
            update(Signature)
            .where(Signature.campaign == campaign.slug, Signature.message != "")
            .values(message="", status_reason="", client_hash=""),
            execution_options={"synchronize_session": False},
        )
        report.letters_cleared += result.rowcount
    db.session.commit()
    db.session.expire_all()
    log.info("purge: %s", report)
    return report
