"""What a supporter's status page shows, per target: queued, sent or failed.

The page behind the thank-you page's "See where your letter is" link shows
either a real letter (a :class:`~app.models.Signature`'s deliveries) or a
:class:`StandIn`.

Why stand-ins: a spam filter may drop a submission (``Verdict.drop``);
duplicate_signer does when the address has signed this campaign already.
Nothing is stored and nothing is sent, yet the answer must be the one a new
signer gets, or anybody could type an address into the form and learn whether
that person had signed. A new signer's thank-you page links to a page whose
rows go from "queued" to "sent" (or "failed"), so a dropped one's must too.

A stand-in is not stored. Its link (see :mod:`app.tokens`) carries, hidden,
the state a new letter would have had (accepted, held or unconfirmed) and the
newest delivery id at that moment. The page then shows, per target, what the
first real letter queued after that moment shows: the queue is first in,
first out, so that is what a letter queued at that moment would show too.
When no letter followed, it shows what the letter before it came to, once
the queue is past it.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from .delivery import is_paused, sent_in_last_hour
from .extensions import db
from .models import Delivery, utcnow

LABELS = {"pending": "queued", "sending": "queued", "held": "queued", "sent": "sent", "failed": "failed"}

#: How many deliveries before and after a stand-in's moment are searched for
#: one to the same target. Bounds the work of one page view on a big table;
#: a target with no letter among so many is an odd case that falls back on
#: "it went out".
REFERENCE_WINDOW = 1000

#: A new letter waits for the worker to pick it up; a stand-in with nothing to
#: follow shows "queued" at least this long (capped by DELIVERY_POLL_SECONDS).
PICK_UP_SECONDS = 2


@dataclass(frozen=True)
class StandIn:
    """The letter a dropped submission would have been; see the module docstring."""

    #: The campaign's slug.
    campaign: str
    #: "accepted", "held" or "unconfirmed": what the signature would have been.
    status: str
    #: The newest delivery id when it was made (0 for none).
    after_id: int
    #: When it was made (naive UTC, whole seconds).
    created_at: datetime


def stand_in(campaign, verdict, config):
    """A :class:`StandIn` for a submission to ``campaign`` dropped by ``verdict``, made now."""
    if config["CONFIRM_SUPPORTER_EMAIL"]:
        status = "unconfirmed"
    else:
        status = "held" if verdict.held_too else "accepted"
    newest = db.session.scalar(select(func.max(Delivery.id))) or 0
    return StandIn(campaign.slug, status, newest, utcnow().replace(microsecond=0))


def label(delivery):
    """``delivery``'s state as the page names it: queued, sent, faxing (sent to a fax gateway) or failed."""
    state = LABELS.get(delivery.status, "queued")
    # A fax gateway's acceptance means queued for faxing, not faxed: say so.
    return "faxing" if state == "sent" and delivery.channel == "fax" else state


def letter_rows(signature, campaign):
    """``[(target, state)]`` for a real letter; state is None for a target added since it was queued."""
    by_target = {d.target_key: d for d in signature.deliveries if d.kind == "letter"}
    return [(target, label(by_target[target.key]) if target.key in by_target else None)
            for target in campaign.targets]


def stand_in_rows(letter, campaign, config):
    """``[(target, state)]`` for a stand-in, or None once a real one would be gone (expired unconfirmed)."""
    now = utcnow()
    if letter.status == "unconfirmed":
        # Never confirmed, so never sent; purge deletes a real one after this.
        if now > letter.created_at + timedelta(days=config["CONFIRM_EXPIRY_DAYS"]):
            return None
        return [(target, "queued") for target in campaign.targets]
    if letter.status == "held":
        return [(target, "queued") for target in campaign.targets]
    picked_up = now >= letter.created_at + timedelta(seconds=min(PICK_UP_SECONDS, config["DELIVERY_POLL_SECONDS"]))
    following = _nearest_letters(letter.after_id, following=True)
    preceding = _nearest_letters(letter.after_id, following=False)
    return [(target, _follow_queue(target, following.get(target.key), preceding.get(target.key), picked_up, config))
            for target in campaign.targets]


def _nearest_letters(after_id, following):
    """{target key: the letter to it queued first after (or last up to) delivery ``after_id``}.

    Within :data:`REFERENCE_WINDOW` ids, and not held. One range over the
    primary key for every target: filtering on the target instead would walk
    all its letters, a million in a big campaign.
    """
    if following:
        window, pick = (Delivery.id > after_id, Delivery.id <= after_id + REFERENCE_WINDOW), func.min(Delivery.id)
    else:
        window, pick = (Delivery.id <= after_id, Delivery.id > after_id - REFERENCE_WINDOW), func.max(Delivery.id)
    ids = db.session.scalars(
        select(pick).where(*window, Delivery.kind == "letter", Delivery.status != "held").group_by(Delivery.target_key)
    ).all()
    return {d.target_key: d for d in db.session.scalars(select(Delivery).where(Delivery.id.in_(ids)))}


def _follow_queue(target, following, preceding, picked_up, config):
    """The state a letter to ``target`` queued between ``preceding`` and ``following`` would be in now."""
    if following is not None:
        return label(following)
    if preceding is not None and preceding.status in ("pending", "sending"):
        return "queued"
    if not picked_up or is_paused():
        return "queued"
    cap = config["TARGET_HOURLY_CAP"]
    if cap and db.session.scalar(select(func.count()).where(sent_in_last_hour(target.key))) >= cap:
        return "queued"
    if preceding is not None:
        return label(preceding)
    return "faxing" if target.channel == "fax" else "sent"
