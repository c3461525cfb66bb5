"""Target health: bounces in a row, suspension, complaints; and the organiser's moves on a target's letters.

A target address with ``TARGET_BOUNCE_LIMIT`` hard bounces in a row, with no
reported delivery in between, is suspended (one :class:`~app.models.TargetHealth`
row per address, across campaigns). The counting happens in the transitions
:func:`app.states.bounced` and :func:`app.states.delivered`, so every path
that reports a letter (Mailgun's webhook, DSNs) counts the same way.

A suspended target's letters are ``held``, the status a letter of a signature
waiting for a moderator has; what tells the two apart is the signature: a
held letter whose signature is accepted waits only for its target. Letters
are held rather than given a status of their own so that no worker claims
them, the running totals count them as held with no new trigger, and the
one release path for held letters (:func:`app.states.signatures._release_letters`)
needs only to skip suspended targets.

Bulk moves (holding, resuming, cancelling, rerouting) are one SQL statement
each. Nothing here commits.
"""

import functools
from collections.abc import Collection, Iterable

from flask import current_app
from sqlalchemy import ColumnElement, and_, exists, or_, select, update

from .. import models
from ..extensions import db, upsert_insert
from ..security import redact_addresses
from .statuses import TARGET_KINDS, DeliveryStatus, SignatureStatus, check

#: The statuses of a letter that has not gone out and may still: what resume, cancel and reroute move.
WAITING = (DeliveryStatus.PENDING, DeliveryStatus.HELD)
#: The start of the note of a letter held because its target is suspended.
SUSPENDED_NOTE = "target suspended: "


def _health_row(target_key):
    """The :class:`~app.models.TargetHealth` row of ``target_key``, made if missing (safe against a racing insert)."""
    insert = upsert_insert(db.session.get_bind().dialect.name)
    db.session.execute(insert(models.TargetHealth).values(
        target_key=target_key, bounces_in_row=0, last_bounce="", complaint="").on_conflict_do_nothing())


def _target_only(text, target_key):
    """``text`` with every address but ``target_key`` redacted: a bounce may quote other headers."""
    lowered, key = text.lower(), target_key.lower()
    parts, start = [], 0
    while (found := lowered.find(key, start)) >= 0:
        parts.append(redact_addresses(text[start:found]))
        parts.append(text[found:found + len(key)])
        start = found + len(key)
    return "".join(parts) + redact_addresses(text[start:])


def bounce_counted(delivery: "models.Delivery", report: str) -> bool:
    """Count the hard bounce of a letter to ``delivery.target_key``; return True when it suspended the target.

    Called by :func:`app.states.bounced` when the letter became bounced. At
    TARGET_BOUNCE_LIMIT in a row the target is suspended: its pending
    letters are held and every organiser is emailed, once per suspension
    (:mod:`app.target_alert`), all in the caller's transaction.
    """
    if delivery.kind not in TARGET_KINDS:
        return False
    Health = models.TargetHealth
    key, now = delivery.target_key, models.utcnow()
    _health_row(key)
    text = _target_only(report, key)[:2000]
    db.session.execute(
        update(Health).where(Health.target_key == key)
        .values(bounces_in_row=Health.bounces_in_row + 1, last_bounce=text, last_bounce_at=now),
        execution_options={"synchronize_session": False},
    )
    # Conditional, so two bounces counted at once suspend (and alert) once.
    suspended = db.session.execute(
        update(Health).where(Health.target_key == key, Health.suspended_at.is_(None),
                             Health.bounces_in_row >= current_app.config["TARGET_BOUNCE_LIMIT"])
        .values(suspended_at=now, alerted_at=now),
        execution_options={"synchronize_session": False},
    ).rowcount
    if not suspended:
        return False
    _hold_pending(key, SUSPENDED_NOTE + text)
    # Here, not at the top: app.delivery imports app.models, which imports this package.
    from ..target_alert import alert_organisers

    alert_organisers(delivery.campaign, key, text, db.session.scalar(
        select(Health.bounces_in_row).where(Health.target_key == key)))
    return True


def delivery_counted(delivery: "models.Delivery") -> None:
    """A letter to ``delivery.target_key`` was reported delivered: its bounces in a row start again from 0.

    A suspension is not lifted by it: only an organiser resumes (:func:`resume`).
    """
    if delivery.kind not in TARGET_KINDS:
        return
    Health = models.TargetHealth
    db.session.execute(
        update(Health).where(Health.target_key == delivery.target_key, Health.bounces_in_row != 0)
        .values(bounces_in_row=0),
        execution_options={"synchronize_session": False},
    )


def complained(delivery: "models.Delivery", report: str) -> None:
    """A recipient of the sent ``delivery`` complained (marked it as spam): its target is flagged with ``report``.

    A complaint does not suspend. The letter's own note is
    :func:`app.states.reported`'s to set.
    """
    if delivery.kind not in TARGET_KINDS:
        return
    _health_row(delivery.target_key)
    db.session.execute(
        update(models.TargetHealth).where(models.TargetHealth.target_key == delivery.target_key)
        .values(complaint=_target_only(report, delivery.target_key)[:2000] or "complaint",
                complained_at=models.utcnow()),
        execution_options={"synchronize_session": False},
    )


def suspended_keys(target_keys: Iterable[str] | None = None) -> set[str]:
    """The suspended target addresses (among ``target_keys``, if given)."""
    # Every suspended address, then the wanted ones: there are a handful at
    # most, and building an IN (...) query per signature cost more than the read.
    suspended = set(db.session.scalars(_suspended_query()))
    return suspended if target_keys is None else suspended.intersection(target_keys)


@functools.cache
def _suspended_query():
    # Built on first use: app.models imports this package.
    return select(models.TargetHealth.target_key).where(models.TargetHealth.suspended_at.is_not(None))


def held_if_suspended(delivery: "models.Delivery") -> bool:
    """Hold the letter ``delivery``, just put back in the queue, if its target was suspended meanwhile.

    A letter at the server when its target was suspended comes back (a
    temporary failure, a cap wait) after the suspension held the others:
    it joins them rather than go out. Returns True when it was held.
    """
    if delivery.kind not in TARGET_KINDS:
        return False
    health = db.session.get(models.TargetHealth, delivery.target_key)
    if health is None or health.suspended_at is None:
        return False
    delivery.status = DeliveryStatus.HELD
    delivery.note = SUSPENDED_NOTE + (health.last_bounce or "")
    return True


def not_suspended() -> ColumnElement[bool]:
    """A condition on :class:`~app.models.Delivery`: its target is not suspended (for release paths)."""
    return models.Delivery.target_key.not_in(
        select(models.TargetHealth.target_key).where(models.TargetHealth.suspended_at.is_not(None)))


def _waiting(target_key, statuses, to):
    """Letters to ``target_key`` in ``statuses`` (each checked for a move ``to``); held ones if held for it only."""
    for status in statuses:
        check("delivery", status, to, WAITING)
    Delivery = models.Delivery
    # Looked up per held letter (by primary key), not as the list of every
    # accepted signature, which SQLite built first: at a million signatures
    # resume took 0.37 s that way, 0.13 s this way.
    accepted = exists().where(models.Signature.id == Delivery.signature_id,
                              models.Signature.status == SignatureStatus.ACCEPTED)
    conditions = []
    if DeliveryStatus.PENDING in statuses:
        conditions.append(Delivery.status == DeliveryStatus.PENDING)
    if DeliveryStatus.HELD in statuses:
        # A digest has no signature of its own: held, it waits for its target only.
        conditions.append(and_(Delivery.status == DeliveryStatus.HELD,
                               or_(accepted, Delivery.kind == "digest")))
    return and_(Delivery.kind.in_(TARGET_KINDS), Delivery.target_key == target_key, or_(*conditions))


def _hold_pending(target_key, note):
    """Hold the pending letters to ``target_key`` (its suspension), with ``note`` saying why."""
    db.session.execute(
        update(models.Delivery)
        .where(models.Delivery.kind.in_(TARGET_KINDS), models.Delivery.target_key == target_key,
               models.Delivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.HELD, note=note),
        execution_options={"synchronize_session": False},
    )


def resume(target_key: str) -> int:
    """Lift the suspension of ``target_key``; make its letters held for it alone due now. Returns how many.

    Its bounces in a row start again from 0, and the next suspension emails
    organisers again. Letters held for a moderator or a confirmation stay held.
    """
    db.session.execute(
        update(models.TargetHealth).where(models.TargetHealth.target_key == target_key)
        .values(suspended_at=None, alerted_at=None, bounces_in_row=0),
        execution_options={"synchronize_session": False},
    )
    return db.session.execute(
        update(models.Delivery).where(_waiting(target_key, (DeliveryStatus.HELD,), DeliveryStatus.PENDING))
        .values(status=DeliveryStatus.PENDING, next_attempt_at=models.utcnow(), note=""),
        execution_options={"synchronize_session": False},
    ).rowcount


def cancel(target_key: str, statuses: Collection[str] = WAITING, campaign_slug: str | None = None) -> int:
    """Cancel the letters to ``target_key`` that wait (pending, or held for their target); return how many.

    Of every campaign, or of ``campaign_slug`` only. They end ``cancelled``:
    never claimed, never sent, visible as such. Raises
    :class:`IllegalTransition` for a status outside :data:`WAITING` (a sent
    letter stays sent: that is history).
    """
    only = [models.Delivery.campaign == campaign_slug] if campaign_slug is not None else []
    return db.session.execute(
        update(models.Delivery).where(_waiting(target_key, statuses, DeliveryStatus.CANCELLED), *only)
        .values(status=DeliveryStatus.CANCELLED, lease_until=None, note="cancelled by an organiser"),
        execution_options={"synchronize_session": False},
    ).rowcount


def reroute(old_key: str, new_key: str, campaign_slug: str, channel: str, statuses: Collection[str] = WAITING) -> int:
    """Move the waiting letters of ``campaign_slug`` to ``old_key`` to ``new_key``; return how many.

    They become pending, due now (held, with a note, if ``new_key`` is
    suspended itself). A supporter's letter is not moved when they have a
    letter to ``new_key`` already. Raises :class:`IllegalTransition` for a
    status outside :data:`WAITING`.
    """
    Delivery = models.Delivery
    other = models.Delivery.__table__.alias("other")
    has_one = select(other.c.id).where(other.c.signature_id == Delivery.signature_id, other.c.kind == "letter",
                                       other.c.target_key == new_key).exists()
    held = bool(suspended_keys([new_key]))
    return db.session.execute(
        update(Delivery)
        .where(_waiting(old_key, statuses, DeliveryStatus.PENDING), Delivery.campaign == campaign_slug, ~has_one)
        .values(target_key=new_key, channel=channel, next_attempt_at=models.utcnow(),
                status=DeliveryStatus.HELD if held else DeliveryStatus.PENDING,
                note=f"{SUSPENDED_NOTE}rerouted from {old_key}" if held else f"rerouted from {old_key}"),
        execution_options={"synchronize_session": False},
    ).rowcount
