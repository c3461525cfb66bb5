"""Held submissions: a moderator approves (letters go out) or rejects (data deleted)."""

import logging

from sqlalchemy import delete, select, update

from . import tally
from .extensions import db
from .models import Delivery, Signature, utcnow

log = logging.getLogger(__name__)


def held_signatures(campaign_slug=None):
    """Held signatures, oldest first; only ``campaign_slug``'s when given."""
    query = select(Signature).where(Signature.status == "held").order_by(Signature.created_at, Signature.id)
    if campaign_slug:
        query = query.where(Signature.campaign == campaign_slug)
    return list(db.session.scalars(query))


def _held(signature_id):
    signature = db.session.get(Signature, signature_id)
    if signature is None or signature.status != "held":
        raise LookupError(f"no held signature {signature_id}")
    return signature


def approve(signature_id):
    """Accept held signature ``signature_id``: its held letters become due now. Commits.

    Raises :class:`LookupError` when there is no such held signature.
    """
    signature = _held(signature_id)
    signature.status = "accepted"
    db.session.execute(
        update(Delivery)
        .where(Delivery.signature_id == signature.id, Delivery.status == "held")
        .values(status="pending", next_attempt_at=utcnow())
    )
    tally.add(signature.campaign, 1)
    db.session.commit()
    log.info("held signature %s approved", signature.id)
    return signature


def reject(signature_id):
    """Delete held signature ``signature_id`` and its deliveries. Commits.

    Raises :class:`LookupError` when there is no such held signature.
    """
    signature = _held(signature_id)
    db.session.execute(delete(Delivery).where(Delivery.signature_id == signature.id))
    db.session.execute(delete(Signature).where(Signature.id == signature.id))
    db.session.commit()
    log.info("held signature %s rejected and deleted", signature_id)
