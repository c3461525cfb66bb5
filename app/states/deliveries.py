"""The transitions of a delivery: the worker's claim and outcomes, the provider's reports, retry."""

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, case, or_, select, update

from .. import models
from ..extensions import db
from . import targets
from .statuses import WENT_OUT, DeliveryStatus, check

if TYPE_CHECKING:
    from ..delivery import Receipt


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
    check("delivery", delivery.status, DeliveryStatus.SENT, (DeliveryStatus.SENDING,))
    delivery.status = DeliveryStatus.SENT
    delivery.lease_until = None
    delivery.sent_at = receipt.accepted_at
    delivery.provider_id = receipt.provider_id
    # A note is not an error: the error column of a sent letter is empty.
    delivery.last_error = ""
    delivery.note = receipt.note


def failed(delivery: "models.Delivery", error: str) -> None:
    """Give up on the claimed ``delivery``: failed, ``error`` (as it may be logged) in ``last_error``."""
    check("delivery", delivery.status, DeliveryStatus.FAILED, (DeliveryStatus.SENDING,))
    delivery.status = DeliveryStatus.FAILED
    delivery.lease_until = None
    delivery.last_error = error


def requeued(delivery: "models.Delivery", error: str, next_attempt_at: datetime) -> None:
    """A temporary failure of the claimed ``delivery``: pending again at ``next_attempt_at``, ``error`` kept."""
    check("delivery", delivery.status, DeliveryStatus.PENDING, (DeliveryStatus.SENDING,))
    delivery.status = DeliveryStatus.PENDING
    delivery.lease_until = None
    delivery.last_error = error
    delivery.next_attempt_at = next_attempt_at
    targets.held_if_suspended(delivery)


def waiting(delivery: "models.Delivery", next_attempt_at: datetime, note: str, capped: bool = False) -> None:
    """The claimed ``delivery`` must wait (office hours, TARGET_HOURLY_CAP): pending again at ``next_attempt_at``.

    Waiting is not a failed attempt: the claim's attempt is given back, and
    ``note`` (why it waits) goes to ``note``, not to ``last_error``.
    ``capped``: the cap held it back; the first time, ``waiting_since`` is
    set, from which DIGEST_AFTER counts (:mod:`app.digests`).
    """
    check("delivery", delivery.status, DeliveryStatus.PENDING, (DeliveryStatus.SENDING,))
    delivery.status = DeliveryStatus.PENDING
    delivery.lease_until = None
    delivery.attempts -= 1
    delivery.next_attempt_at = next_attempt_at
    delivery.note = note
    if capped and delivery.waiting_since is None:
        delivery.waiting_since = models.utcnow()
    targets.held_if_suspended(delivery)


def into_digest(digest_id: int, letter_ids: Collection[int]) -> int:
    """Gather the pending letters ``letter_ids`` into the digest ``digest_id``: ``in_digest``; return how many.

    One ``UPDATE`` per 500 ids whose ``WHERE`` repeats the condition: a
    letter another worker claimed (sending) or gathered meanwhile is left
    out, so no letter is in two digests or goes both alone and in one.
    From then on the letter follows its digest's status (:mod:`app.digests`).
    """
    Delivery, ids, moved = models.Delivery, list(letter_ids), 0
    for start in range(0, len(ids), 500):
        moved += db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids[start:start + 500]), Delivery.kind == "letter",
                   Delivery.status == DeliveryStatus.PENDING, Delivery.digest_id.is_(None))
            .values(status=DeliveryStatus.IN_DIGEST, digest_id=digest_id, lease_until=None, note=""),
            execution_options={"synchronize_session": False},
        ).rowcount
    return moved


def delivered(delivery: "models.Delivery", report: str) -> bool:
    """The provider reported the sent ``delivery`` delivered; return True if its status changed.

    Reports arrive out of order (a webhook retried late, a ``delivered``
    after a bounce of the same message): one for a letter already delivered
    or bounced changes no status, and becomes its ``note``, so nothing is
    lost and nothing crashes. A bounce is never undone by a late
    ``delivered``. Raises :class:`IllegalTransition` for a letter not sent
    yet (pending, sending, held, failed).
    """
    check("delivery", delivery.status, DeliveryStatus.DELIVERED, WENT_OUT)
    if delivery.status == DeliveryStatus.SENT and _moved(delivery, (DeliveryStatus.SENT,), DeliveryStatus.DELIVERED,
                                                         report):
        targets.delivery_counted(delivery)
        return True
    delivery.note = report
    return False


def bounced(delivery: "models.Delivery", report: str) -> bool:
    """The provider reported a permanent failure of the sent ``delivery``; return True if it became bounced.

    From sent, and from delivered too (a mailbox that accepted, then bounced
    the message: the later, worse report counts). A second bounce only
    becomes the ``note``; ``report`` goes to ``note``, not ``last_error``:
    the letter did go out. A bounce counts towards suspending its target
    (:func:`app.states.targets.bounce_counted`). Raises :class:`IllegalTransition` if not sent yet.
    """
    check("delivery", delivery.status, DeliveryStatus.BOUNCED, WENT_OUT)
    if delivery.status != DeliveryStatus.BOUNCED and _moved(
            delivery, (DeliveryStatus.SENT, DeliveryStatus.DELIVERED), DeliveryStatus.BOUNCED, report):
        targets.bounce_counted(delivery, report)
        return True
    delivery.note = report
    return False


def _moved(delivery, since, to, report):
    """Move ``delivery`` from one of the statuses ``since`` to ``to``, ``report`` its note; True if it moved.

    One conditional UPDATE: two processes may report on one letter at once
    (the delivery thread of each gunicorn worker polls the bounce mailbox;
    webhooks arrive in parallel), each having read it sent, and only one
    may move it and count it for its target. ``delivery`` is left expired
    where the row changed, to be read again as it is now.
    """
    Delivery = models.Delivery
    moved = db.session.execute(
        update(Delivery).where(Delivery.id == delivery.id, Delivery.status.in_(since)).values(status=to, note=report),
        execution_options={"synchronize_session": False},
    ).rowcount
    db.session.expire(delivery, ["status", "note", "updated_at"])
    return bool(moved)


def reported(delivery: "models.Delivery", report: str) -> None:
    """A temporary report (a delay, a complaint) on a sent ``delivery``: its status stays, ``report`` is its note.

    Raises :class:`IllegalTransition` for a letter not sent yet.
    """
    check("delivery", delivery.status, delivery.status, WENT_OUT)
    delivery.note = report


#: The statuses :func:`retry` may make due again.
RETRYABLE = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)


def retry(*conditions: ColumnElement[bool], statuses: Collection[str] = (DeliveryStatus.FAILED,)) -> int:
    """Make the deliveries matching ``conditions`` with one of ``statuses`` due now; return how many.

    A failed one gets a fresh count of attempts; its last error stays until
    the next try. Letters to a suspended target are left as they are
    (:mod:`app.states.targets`: resume it first). Raises
    :class:`IllegalTransition` for a status outside :data:`RETRYABLE` (a
    sent letter is never sent again).
    """
    for status in statuses:
        check("delivery", status, DeliveryStatus.PENDING, RETRYABLE)
    Delivery = models.Delivery
    return db.session.execute(
        update(Delivery)
        .where(Delivery.status.in_(statuses), targets.not_suspended(), *conditions)
        # A letter of a digest that failed goes alone when retried: out of the digest.
        .values(status=DeliveryStatus.PENDING, next_attempt_at=models.utcnow(), lease_until=None, digest_id=None,
                attempts=case((Delivery.status == DeliveryStatus.FAILED, 0), else_=Delivery.attempts)),
        execution_options={"synchronize_session": False},
    ).rowcount
