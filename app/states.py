"""Every status of a signature and a delivery, and every change between them.

A status changes here and nowhere else (pretix changes an order's status only
through its services; WriteToThem's ``FYR/Queue.pm`` names every state of a
message in one module). Each transition is a function that checks the status
it starts from and raises :class:`IllegalTransition`, changing nothing, when
that status does not allow it. The public counter (:mod:`app.tally`) moves in
the same functions, so a status and the counter cannot disagree. The
dashboard's running totals follow by themselves (triggers, :mod:`app.totals`).

Transitions that touch many rows (the worker's claim, approving, retrying,
forgetting, purging) are one SQL statement each, with the statuses they may
start from in their ``WHERE`` clause. No function here commits: the caller
owns the transaction.

The columns stay ``String``: a :class:`enum.StrEnum` member is the very string
the database stores, and a status read back is a plain ``str`` that compares
equal to its member.
"""

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Row, case, delete, or_, select, update

# Modules, not names: app.models imports the enums below from here.
from . import models, tally
from .extensions import db

if TYPE_CHECKING:
    from .delivery import Receipt


class SignatureStatus(StrEnum):
    """Where a :class:`~app.models.Signature` stands."""

    #: Its letters go out; counted by the public counter.
    ACCEPTED = "accepted"
    #: A spam filter held it: it waits for a moderator (:func:`approve`, :func:`reject`).
    HELD = "held"
    #: It waits for the supporter to confirm their address (:func:`confirm`).
    UNCONFIRMED = "unconfirmed"
    #: Never stored: a rejected submission (or held signature) is deleted.
    #: :func:`reject` names it in :class:`IllegalTransition`.
    REJECTED = "rejected"


class DeliveryStatus(StrEnum):
    """Where a :class:`~app.models.Delivery` stands."""

    #: Due at ``next_attempt_at``.
    PENDING = "pending"
    #: Claimed by a worker until ``lease_until``.
    SENDING = "sending"
    #: Accepted by its backend (``note`` says what that means, e.g. queued for faxing).
    SENT = "sent"
    #: The provider reported it delivered to the target's mailbox (:func:`delivered`).
    DELIVERED = "delivered"
    #: The provider reported a permanent failure: the target's mailbox refused it (:func:`bounced`).
    BOUNCED = "bounced"
    #: Given up; ``last_error`` says why.
    FAILED = "failed"
    #: Its signature waits for approval or confirmation.
    HELD = "held"


class IllegalTransition(ValueError):
    """A status change its current status does not allow; nothing was changed."""

    def __init__(self, what: str, from_status: str | None, to_status: str) -> None:
        self.from_status: str | None = from_status
        self.to_status: str = to_status
        super().__init__(f"a {what} cannot go from {from_status} to {to_status}")


def _check(what, current, to, legal):
    if current not in legal:
        raise IllegalTransition(what, current, to)


# --- signatures ---------------------------------------------------------------------------


def letter_status(signature: "models.Signature") -> DeliveryStatus:
    """The status a new letter of ``signature`` starts in: pending once it is accepted, else held."""
    return DeliveryStatus.PENDING if signature.status == SignatureStatus.ACCEPTED else DeliveryStatus.HELD


def accept(signature: "models.Signature") -> None:
    """Make a new (not yet stored) ``signature`` accepted and count it.

    The counter goes up now, in the caller's transaction. Raises
    :class:`IllegalTransition` when ``signature`` has a status already.
    """
    _check("signature", signature.status, SignatureStatus.ACCEPTED, (None,))
    signature.status = SignatureStatus.ACCEPTED
    tally.add(signature.campaign, 1)


def hold(signature: "models.Signature", reason: str) -> None:
    """Make a new ``signature`` held for a moderator, with a spam filter's ``reason``; not counted."""
    _check("signature", signature.status, SignatureStatus.HELD, (None,))
    signature.status = SignatureStatus.HELD
    signature.status_reason = reason


def await_confirmation(signature: "models.Signature", reason: str = "") -> None:
    """Make a new ``signature`` wait for its supporter's confirmation; not counted.

    ``reason``: a spam filter's hold, kept so that the confirmed signature
    then waits for a moderator (:func:`confirm`).
    """
    _check("signature", signature.status, SignatureStatus.UNCONFIRMED, (None,))
    signature.status = SignatureStatus.UNCONFIRMED
    signature.status_reason = reason


def confirm(signature: "models.Signature") -> SignatureStatus:
    """The supporter confirmed an unconfirmed ``signature``; return its new status.

    Confirmation does not skip moderation: with a filter's reason it becomes
    held. Otherwise it is accepted, counted, and its held letters are due now.
    Raises :class:`IllegalTransition` unless it is unconfirmed.
    """
    to = SignatureStatus.HELD if signature.status_reason else SignatureStatus.ACCEPTED
    _check("signature", signature.status, to, (SignatureStatus.UNCONFIRMED,))
    signature.status = to
    if to == SignatureStatus.ACCEPTED:
        _release_letters(signature.id)
        tally.add(signature.campaign, 1)
    return to


def _release_letters(signature_id):
    """Make the held letters of the signature ``signature_id`` due now (bulk: held to pending)."""
    db.session.execute(
        update(models.Delivery)
        .where(models.Delivery.signature_id == signature_id, models.Delivery.kind == "letter",
               models.Delivery.status == DeliveryStatus.HELD)
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


def expire_unconfirmed(before: datetime) -> int:
    """Delete the signatures still unconfirmed that were made before ``before``; return how many."""
    expired = list(db.session.scalars(
        select(models.Signature.id).where(
            models.Signature.status == SignatureStatus.UNCONFIRMED, models.Signature.created_at < before
        )
    ))
    remove(expired)
    return len(expired)


def remove(signature_ids: Sequence[int]) -> None:
    """Delete these signatures, whatever their status, without lowering the counter (a purge).

    Their sent letters stay, anonymous (``signature_id`` NULL, no provider id,
    error, note or Message-ID); every other delivery of theirs is deleted.
    """
    for start in range(0, len(signature_ids), 500):
        chunk = signature_ids[start:start + 500]
        db.session.execute(
            update(models.Delivery)
            .where(models.Delivery.signature_id.in_(chunk), models.Delivery.kind == "letter",
                   models.Delivery.status.in_(WENT_OUT))
            .values(signature_id=None, provider_id="", last_error="", note="", message_id="", lease_until=None),
            execution_options={"synchronize_session": False},
        )
        db.session.execute(
            delete(models.Delivery).where(models.Delivery.signature_id.in_(chunk)),
            execution_options={"synchronize_session": False},
        )
        db.session.execute(
            delete(models.Signature).where(models.Signature.id.in_(chunk)),
            execution_options={"synchronize_session": False},
        )


# --- deliveries ---------------------------------------------------------------------------


def claim(limit: int, lease: timedelta, now: datetime) -> list[int]:
    """Claim up to ``limit`` due deliveries for a worker until ``now + lease``; return their ids, sorted.

    Due: pending with ``next_attempt_at`` passed, or sending with a lease
    that ran out (its worker died). One ``UPDATE … WHERE id IN (SELECT … FOR
    UPDATE SKIP LOCKED) RETURNING``: PostgreSQL skips rows another worker
    holds; SQLite has no row locks (the clause is not rendered) and
    serialises writers, so the statement is atomic there as well. Each claim
    counts as an attempt.
    """
    Delivery = models.Delivery
    due = (
        select(Delivery.id)
        .where(
            or_(
                (Delivery.status == DeliveryStatus.PENDING) & (Delivery.next_attempt_at <= now),
                (Delivery.status == DeliveryStatus.SENDING) & (Delivery.lease_until < now),
            )
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(status=DeliveryStatus.SENDING, lease_until=now + lease, attempts=Delivery.attempts + 1)
        .returning(Delivery.id),
        execution_options={"synchronize_session": False},
    )
    return sorted(claimed.scalars())


def sent(delivery: "models.Delivery", receipt: "Receipt") -> None:
    """A backend accepted the claimed ``delivery``: sent, with the :class:`~app.delivery.Receipt`'s id and note.

    Raises :class:`IllegalTransition` unless it is sending (a failed letter
    is re-queued first, :func:`retry`).
    """
    _check("delivery", delivery.status, DeliveryStatus.SENT, (DeliveryStatus.SENDING,))
    delivery.status = DeliveryStatus.SENT
    delivery.lease_until = None
    delivery.sent_at = receipt.accepted_at
    delivery.provider_id = receipt.provider_id
    # A note is not an error: the error column of a sent letter is empty.
    delivery.last_error = ""
    delivery.note = receipt.note


def failed(delivery: "models.Delivery", error: str) -> None:
    """Give up on the claimed ``delivery``: failed, ``error`` (as it may be logged) in ``last_error``."""
    _check("delivery", delivery.status, DeliveryStatus.FAILED, (DeliveryStatus.SENDING,))
    delivery.status = DeliveryStatus.FAILED
    delivery.lease_until = None
    delivery.last_error = error


def requeued(delivery: "models.Delivery", error: str, next_attempt_at: datetime) -> None:
    """A temporary failure of the claimed ``delivery``: pending again at ``next_attempt_at``, ``error`` kept."""
    _check("delivery", delivery.status, DeliveryStatus.PENDING, (DeliveryStatus.SENDING,))
    delivery.status = DeliveryStatus.PENDING
    delivery.lease_until = None
    delivery.last_error = error
    delivery.next_attempt_at = next_attempt_at


def waiting(delivery: "models.Delivery", next_attempt_at: datetime, note: str) -> None:
    """The claimed ``delivery``'s target had its TARGET_HOURLY_CAP: pending again at ``next_attempt_at``.

    Waiting is not a failed attempt: the claim's attempt is given back, and
    ``note`` (why it waits) goes to ``note``, not to ``last_error``.
    """
    _check("delivery", delivery.status, DeliveryStatus.PENDING, (DeliveryStatus.SENDING,))
    delivery.status = DeliveryStatus.PENDING
    delivery.lease_until = None
    delivery.attempts -= 1
    delivery.next_attempt_at = next_attempt_at
    delivery.note = note


#: The statuses of a letter a backend accepted: sent, and what the provider reported of it since.
WENT_OUT = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.BOUNCED)


def delivered(delivery: "models.Delivery", report: str) -> bool:
    """The provider reported the sent ``delivery`` delivered; return True if its status changed.

    Reports arrive out of order (a webhook retried late, a ``delivered``
    after a bounce of the same message): one for a letter already delivered
    or bounced changes no status, and becomes its ``note``, so nothing is
    lost and nothing crashes. A bounce is never undone by a late
    ``delivered``. Raises :class:`IllegalTransition` for a letter not sent
    yet (pending, sending, held, failed).
    """
    _check("delivery", delivery.status, DeliveryStatus.DELIVERED, WENT_OUT)
    delivery.note = report
    if delivery.status != DeliveryStatus.SENT:
        return False
    delivery.status = DeliveryStatus.DELIVERED
    return True


def bounced(delivery: "models.Delivery", report: str) -> bool:
    """The provider reported a permanent failure of the sent ``delivery``; return True if it became bounced.

    From sent, and from delivered too (a mailbox that accepted, then bounced
    the message: the later, worse report counts). A second bounce only
    becomes the ``note``; ``report`` goes to ``note``, not ``last_error``:
    the letter did go out. Raises :class:`IllegalTransition` if not sent yet.
    """
    _check("delivery", delivery.status, DeliveryStatus.BOUNCED, WENT_OUT)
    delivery.note = report
    if delivery.status == DeliveryStatus.BOUNCED:
        return False
    delivery.status = DeliveryStatus.BOUNCED
    return True


def reported(delivery: "models.Delivery", report: str) -> None:
    """A temporary report (a delay, a complaint) on a sent ``delivery``: its status stays, ``report`` is its note.

    Raises :class:`IllegalTransition` for a letter not sent yet.
    """
    _check("delivery", delivery.status, delivery.status, WENT_OUT)
    delivery.note = report


#: The statuses :func:`retry` may make due again.
RETRYABLE = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)


def retry(*conditions: ColumnElement[bool], statuses: Collection[str] = (DeliveryStatus.FAILED,)) -> int:
    """Make the deliveries matching ``conditions`` with one of ``statuses`` due now; return how many.

    A failed one gets a fresh count of attempts; its last error stays until
    the next try. Raises :class:`IllegalTransition` for a status outside
    :data:`RETRYABLE` (a sent letter is never sent again).
    """
    for status in statuses:
        _check("delivery", status, DeliveryStatus.PENDING, RETRYABLE)
    Delivery = models.Delivery
    return db.session.execute(
        update(Delivery)
        .where(Delivery.status.in_(statuses), *conditions)
        .values(status=DeliveryStatus.PENDING, next_attempt_at=models.utcnow(), lease_until=None,
                attempts=case((Delivery.status == DeliveryStatus.FAILED, 0), else_=Delivery.attempts)),
        execution_options={"synchronize_session": False},
    ).rowcount
