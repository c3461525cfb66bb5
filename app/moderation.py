"""Held signatures and what a moderator does with them.

The CLI (``clamor moderation …``) and the admin pages call these; each needs
an app context and commits its own transaction.
"""

import logging

from flask import current_app
from sqlalchemy import Select, select

from . import states
from .extensions import db
from .models import Figure, Signature
from .states import SignatureStatus

log = logging.getLogger(__name__)


def held_query(campaign_slug: str | None = None) -> Select:
    """The held signatures, not ordered; only ``campaign_slug``'s when given (the moderation page pages it by id)."""
    query = select(Signature).where(Signature.status == SignatureStatus.HELD)
    if campaign_slug:
        return query.where(Signature.campaign == campaign_slug)
    # Through the campaigns that hold any (the running totals), so that each
    # one's (campaign, status) index is read: with the status alone SQLite
    # reads every signature (0.3 s at a million when few are held).
    holding = select(Figure.campaign).where(Figure.name == "status", Figure.key == SignatureStatus.HELD, Figure.n > 0)
    return query.where(Signature.campaign.in_(holding))


def held_signatures(campaign_slug: str | None = None) -> list[Signature]:
    """Every held :class:`Signature`, oldest first (by id: the order they came in); ``campaign_slug``'s if given."""
    return list(db.session.scalars(held_query(campaign_slug).order_by(Signature.id)))


def approve(signature_id: int) -> Signature:
    """Accept a held signature and queue its letters; return the :class:`Signature`.

    Its held deliveries become pending and due now; the delivery worker sends
    them. Raises :class:`LookupError` when there is no held signature with this
    id (never held, already approved or rejected — also by a moderator who was
    faster).
    """
    try:
        signature = states.approve(signature_id)
    except (LookupError, states.IllegalTransition) as exc:
        db.session.rollback()
        raise LookupError(f"no held signature with id {signature_id}") from exc
    db.session.commit()
    log.info("signature %s approved by a moderator; letters queued", signature_id)
    current_app.extensions["clamor"].wake_worker()
    return signature


def reject(signature_id: int) -> None:
    """Delete a held signature and its deliveries: nothing of the supporter is kept.

    Raises :class:`LookupError` when there is no held signature with this id;
    accepted signatures are not deleted through moderation.
    """
    try:
        states.reject(signature_id)
    except (LookupError, states.IllegalTransition) as exc:
        db.session.rollback()
        raise LookupError(f"no held signature with id {signature_id}") from exc
    db.session.commit()
    db.session.expire_all()
    log.info("signature %s rejected by a moderator; deleted", signature_id)
