"""Held signatures and what a moderator does with them.

The CLI (``clamor moderation …``) and the admin pages call these; each needs
an app context and commits its own transaction.
"""

import logging

from flask import current_app
from sqlalchemy import delete, select, update

from . import tally
from .extensions import db
from .models import Delivery, Signature, utcnow

log = logging.getLogger(__name__)


def held_signatures(campaign_slug=None):
    """Every held :class:`Signature`, oldest first; only ``campaign_slug``'s when given."""
    query = select(Signature).where(Signature.status == "held").order_by(Signature.created_at, Signature.id)
    if campaign_slug:
        query = query.where(Signature.campaign == campaign_slug)
    return list(db.session.scalars(query))


def approve(signature_id):
    """Accept a held signature and queue its letters; return the :class:`Signature`.

    Its held deliveries become pending and due now; the delivery worker sends
    them. Raises :class:`LookupError` when there is no held signature with this
    id (never held, already approved or rejected — also by a moderator who was
    faster).
    """
    # A conditional UPDATE, so two moderators approving at once queue the
    # letters once.
    approved = db.session.execute(
        update(Signature)
        .where(Signature.id == signature_id, Signature.status == "held")
        .values(status="accepted"),
        execution_options={"synchronize_session": False},
    ).rowcount
    if not approved:
        db.session.rollback()
        raise LookupError(f"no held signature with id {signature_id}")
    db.session.execute(
        update(Delivery)
        .where(Delivery.signature_id == signature_id, Delivery.status == "held")
        .values(status="pending", next_attempt_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    signature = db.session.get(Signature, signature_id, populate_existing=True)
    tally.add(signature.campaign, 1)
    db.session.commit()
    log.info("signature %s approved by a moderator; letters queued", signature_id)
    current_app.extensions["clamor"].wake_worker()
    return signature


def reject(signature_id):
    """Delete a held signature and its deliveries: nothing of the supporter is kept.

    Raises :class:`LookupError` when there is no held signature with this id;
    accepted signatures are not deleted through moderation.
    """
    held = select(Signature.id).where(Signature.id == signature_id, Signature.status == "held")
    # ON DELETE CASCADE would do this too; explicit, so it does not depend on
    # SQLite's foreign_keys pragma.
    db.session.execute(
        delete(Delivery).where(Delivery.signature_id.in_(held.scalar_subquery())),
        execution_options={"synchronize_session": False},
    )
    deleted = db.session.execute(
        delete(Signature).where(Signature.id == signature_id, Signature.status == "held"),
        execution_options={"synchronize_session": False},
    ).rowcount
    if not deleted:
        db.session.rollback()
        raise LookupError(f"no held signature with id {signature_id}")
    db.session.commit()
    db.session.expire_all()
    log.info("signature %s rejected by a moderator; deleted", signature_id)
