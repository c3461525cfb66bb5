"""Held signatures and what a moderator does with them.

The CLI (``clamor moderation …``) and the admin pages call these; each needs
an app context and commits its own transaction.
"""

import logging

from flask import current_app
from sqlalchemy import select

from . import states
from .extensions import db
from .models import Signature
from .states import SignatureStatus

log = logging.getLogger(__name__)


def held_signatures(campaign_slug: str | None = None) -> list[Signature]:
    """Every held :class:`Signature`, oldest first; only ``campaign_slug``'s when given."""
    query = (select(Signature).where(Signature.status == SignatureStatus.HELD)
             .order_by(Signature.created_at, Signature.id))
    if campaign_slug:
        query = query.where(Signature.campaign == campaign_slug)
    return list(db.session.scalars(query))


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
