"""The transitions of a signature: accept, hold, confirm, approve, reject, forget, remove.

The public counter (:mod:`app.tally`) moves here, in the same function as
the status it counts.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, and_, delete, not_, select, update
from sqlalchemy.orm.attributes import set_committed_value

# Modules, not names: app.models imports the statuses from this package.
from .. import models, tally
from ..extensions import db
from . import targets
from .statuses import WENT_OUT, DeliveryStatus, IllegalTransition, SignatureStatus, check


def letter_status(signature: "models.Signature") -> DeliveryStatus:
    """The status a new letter of ``signature`` starts in: pending once it is accepted, else held."""
    return DeliveryStatus.PENDING if signature.status == SignatureStatus.ACCEPTED else DeliveryStatus.HELD


def accept(signature: "models.Signature") -> None:
    """Make a new (not yet stored) ``signature`` accepted and count it.

    The counter goes up now, in the caller's transaction. Raises
    :class:`IllegalTransition` when ``signature`` has a status already.
    """
    check("signature", signature.status, SignatureStatus.ACCEPTED, (None,))
    signature.status = SignatureStatus.ACCEPTED
    tally.add(signature.campaign, 1)


def hold(signature: "models.Signature", reason: str) -> None:
    """Make a new ``signature`` held for a moderator, with a spam filter's ``reason``; not counted."""
    check("signature", signature.status, SignatureStatus.HELD, (None,))
    signature.status = SignatureStatus.HELD
    signature.status_reason = reason


def await_confirmation(signature: "models.Signature", reason: str = "") -> None:
    """Make a new ``signature`` wait for its supporter's confirmation; not counted.

    ``reason``: a spam filter's hold, kept so that the confirmed signature
    then waits for a moderator (:func:`confirm`).
    """
    check("signature", signature.status, SignatureStatus.UNCONFIRMED, (None,))
    signature.status = SignatureStatus.UNCONFIRMED
    signature.status_reason = reason


def confirm(signature: "models.Signature") -> SignatureStatus | None:
    """The supporter confirmed an unconfirmed ``signature``; return its new status.

    Confirmation does not skip moderation: with a filter's reason it becomes
    held. Otherwise it is accepted, counted, and its held letters are due now.
    Raises :class:`IllegalTransition` unless it is unconfirmed.

    One conditional ``UPDATE``, as :func:`approve`: when the row is no longer
    unconfirmed although ``signature`` says so (a second click on the button
    confirmed it meanwhile, or ``clamor purge`` removed it), nothing changes,
    ``signature`` is expired, and the answer is None.
    """
    to = SignatureStatus.HELD if signature.status_reason else SignatureStatus.ACCEPTED
    check("signature", signature.status, to, (SignatureStatus.UNCONFIRMED,))
    confirmed = db.session.execute(
        update(models.Signature)
        .where(models.Signature.id == signature.id, models.Signature.status == SignatureStatus.UNCONFIRMED)
        .values(status=to),
        execution_options={"synchronize_session": False},
    ).rowcount
    if not confirmed:
        db.session.expire(signature)
        return None
    # What the UPDATE wrote, without a second one at the next flush.
    set_committed_value(signature, "status", to)
    if to == SignatureStatus.ACCEPTED:
        _release_letters(signature.id)
        tally.add(signature.campaign, 1)
    return to


def _release_letters(signature_id):
    """Make the held letters of the signature ``signature_id`` due now (bulk: held to pending).

    A letter to a suspended target stays held (:mod:`app.states.targets`).
    """
    db.session.execute(
        update(models.Delivery)
        .where(models.Delivery.signature_id == signature_id, models.Delivery.kind == "letter",
               models.Delivery.status == DeliveryStatus.HELD, targets.not_suspended())
        .values(status=DeliveryStatus.PENDING, next_attempt_at=models.utcnow()),
        execution_options={"synchronize_session": False},
    )


def _not_held(signature_id, to):
    """The error for a moderator's decision on ``signature_id`` when it is not held."""
    status = db.session.scalar(select(models.Signature.status).where(models.Signature.id == signature_id))
    if status is None:
        return LookupError(f"no held signature with id {signature_id}")
    return IllegalTransition("signature", status, to)


def approve(signature_id: int) -> "models.Signature":
    """A moderator releases a held signature: accepted, counted, its letters due now. Returns it.

    One conditional ``UPDATE``, so two moderators approving at once release
    the letters and count the signature once. Raises :class:`LookupError`
    when there is no such signature, :class:`IllegalTransition` when it is
    not held (already approved, say).
    """
    approved = db.session.execute(
        update(models.Signature)
        .where(models.Signature.id == signature_id, models.Signature.status == SignatureStatus.HELD)
        .values(status=SignatureStatus.ACCEPTED),
        execution_options={"synchronize_session": False},
    ).rowcount
    if not approved:
        raise _not_held(signature_id, SignatureStatus.ACCEPTED)
    _release_letters(signature_id)
    signature = db.session.get(models.Signature, signature_id, populate_existing=True)
    tally.add(signature.campaign, 1)
    return signature


def reject(signature_id: int) -> None:
    """A moderator rejects a held signature: it and its deliveries are deleted.

    Raises :class:`LookupError` when there is no such signature,
    :class:`IllegalTransition` when it is not held: accepted signatures are
    not deleted through moderation.
    """
    held = select(models.Signature.id).where(models.Signature.id == signature_id,
                                             models.Signature.status == SignatureStatus.HELD)
    # ON DELETE CASCADE would do this too; explicit, so it does not depend on
    # SQLite's foreign_keys pragma.
    db.session.execute(
        delete(models.Delivery).where(models.Delivery.signature_id.in_(held.scalar_subquery())),
        execution_options={"synchronize_session": False},
    )
    deleted = db.session.execute(
        delete(models.Signature).where(models.Signature.id == signature_id,
                                       models.Signature.status == SignatureStatus.HELD),
        execution_options={"synchronize_session": False},
    ).rowcount
    if not deleted:
        raise _not_held(signature_id, SignatureStatus.REJECTED)


def forget(rows: Sequence[Row[Any]]) -> None:
    """Delete the signatures ``rows`` (``id``, ``campaign``, ``status`` each) at their supporter's request.

    The public counter goes down by the accepted ones: the person asked not
    to be counted any more. Their sent letters stay, anonymous (:func:`remove`).
    """
    for row in rows:
        if row.status == SignatureStatus.ACCEPTED:
            tally.add(row.campaign, -1)
    remove([row.id for row in rows])


def remove(signature_ids: Sequence[int]) -> None:
    """Delete these signatures, whatever their status, without lowering the counter (a purge).

    Their sent letters stay, anonymous (``signature_id`` NULL, no provider id,
    error, note or Message-ID); every other delivery of theirs is deleted.
    """
    went_out = and_(models.Delivery.kind == "letter", models.Delivery.status.in_(WENT_OUT))
    for start in range(0, len(signature_ids), 500):
        chunk = signature_ids[start:start + 500]
        # The status is never a condition SQLite can look up by: with it in
        # the WHERE, SQLite (which keeps no statistics) chose the status index
        # over signature_id's and read every sent letter, 2 s a chunk at 5,000,000.
        theirs = models.Delivery.signature_id.in_(chunk)
        db.session.execute(
            delete(models.Delivery).where(theirs, not_(went_out)),
            execution_options={"synchronize_session": False},
        )
        db.session.execute(
            update(models.Delivery).where(theirs)
            .values(signature_id=None, provider_id="", last_error="", note="", message_id="", lease_until=None),
            execution_options={"synchronize_session": False},
        )
        db.session.execute(
            delete(models.Signature).where(models.Signature.id.in_(chunk)),
            execution_options={"synchronize_session": False},
        )
