"""Where letters and signatures stand: one query function per figure, for the admin dashboard and ``clamor deliveries``.

The dashboard reads the running totals (:mod:`app.totals`) where it can;
:func:`counted_figures` counts the same figures from the rows, which is what
the running totals must equal. Each figure both the dashboard and the CLI
show (letters by target and status, the newest errors) is one function here.
"""

from collections.abc import Sequence
from datetime import datetime, time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text

from . import tally, totals
from .delivery.letters import MAILBOX_KINDS
from .extensions import db
from .models import LAST_ERROR_WHERE, Delivery, Figure, Signature, TargetHealth, utcnow
from .states import WENT_OUT, DeliveryStatus, SignatureStatus

if TYPE_CHECKING:
    from .campaigns import Campaign

#: The statuses a queued letter has until it is sent, failed or held (in a digest: until the digest goes).
QUEUED = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.IN_DIGEST)
#: The per-target figures of the dashboard, in order. "sent" is the letters
#: still sent only; a delivered or bounced one is in its own column.
TARGET_COLUMNS = ("sent", "delivered", "bounced", "queued", "held", "failed", "cancelled")


def target_health(target_keys: Sequence[str] | None = None) -> dict[str, TargetHealth]:
    """``{target key: TargetHealth}`` of the addresses that bounced or had a complaint (among ``target_keys``)."""
    query = select(TargetHealth)
    if target_keys is not None:
        query = query.where(TargetHealth.target_key.in_(list(target_keys)))
    return {health.target_key: health for health in db.session.scalars(query)}


def letters_by_target_from_totals() -> dict[str, dict[str, int]]:
    """``{target key: {figure: n}}`` over every campaign (sent, delivered, queued …), from the running totals.

    What :func:`letters_by_target` counts from the rows, in one read of the
    small ``figure`` table; pending and sending are one figure, queued.
    """
    table = {}
    for key, name, n in db.session.execute(
        select(Figure.key, Figure.name, func.sum(Figure.n))
        .where(Figure.name.like("letters:%"), Figure.n != 0).group_by(Figure.key, Figure.name)
    ):
        if n:
            table.setdefault(key, {})[name.removeprefix("letters:")] = n
    return table


def letters_by_target(campaign_slug: str | None = None) -> dict[str, dict[str, int]]:
    """``{target key: {status: count}}`` of the letters to campaigns' targets (of ``campaign_slug`` only, if given).

    Mail to a supporter's own mailbox is not in it (see :func:`mailbox_mail_by_status`).
    """
    query = (select(Delivery.target_key, Delivery.status, func.count()).where(Delivery.kind == "letter")
             .group_by(Delivery.target_key, Delivery.status))
    if campaign_slug is not None:
        query = query.where(Delivery.campaign == campaign_slug)
    table = {}
    for target, status, count in db.session.execute(query).all():
        table.setdefault(target, {})[status] = count
    return table


def mailbox_mail_by_status() -> dict[str, int]:
    """``{status: count}`` of the mail to supporters' own mailboxes (confirmations, receipts …).

    Counted in the database. One figure for all of it: those are supporters'
    addresses, never listed one by one.
    """
    return dict(db.session.execute(
        select(Delivery.status, func.count()).where(Delivery.kind.in_(MAILBOX_KINDS)).group_by(Delivery.status)
    ).all())


def oldest_pending() -> Delivery | None:
    """The :class:`Delivery` queued longest (pending or sending), or None when nothing waits."""
    return db.session.scalars(
        select(Delivery).where(Delivery.status.in_(QUEUED)).order_by(Delivery.created_at).limit(1)
    ).first()


def recent_errors(
    campaign_slug: str | None = None, target_key: str | None = None, limit: int = 10,
) -> Sequence[Delivery]:
    """The newest pending or failed deliveries with an error, newest first, at most ``limit``.

    With ``campaign_slug`` and ``target_key``: that target's letters only, read
    from the partial index ``ix_delivery_last_error``.
    """
    query = select(Delivery).where(text(LAST_ERROR_WHERE))
    if campaign_slug is not None:
        query = query.where(Delivery.campaign == campaign_slug, Delivery.kind == "letter")
    if target_key is not None:
        query = query.where(Delivery.target_key == target_key)
    return db.session.scalars(query.order_by(Delivery.id.desc()).limit(limit)).all()


def last_error(campaign_slug: str, target_key: str) -> str:
    """The newest error of a failed or waiting letter of ``campaign_slug`` to ``target_key``, or ""."""
    errors = recent_errors(campaign_slug, target_key, limit=1)
    return errors[0].last_error if errors else ""


def former_targets(campaign: "Campaign") -> list[dict[str, Any]]:
    """Addresses with letters of ``campaign`` waiting (queued or held) that its file no longer lists, from the totals.

    ``[{"key", "queued", "held"}]``, sorted: what an organiser reroutes
    after correcting an address in the campaign file.
    """
    found = totals.figures(campaign.slug)
    listed = {target.key for target in campaign.targets}
    waiting = {key for name in ("letters:queued", "letters:held") for key in found.get(name, {})} - listed
    return [{"key": key, "queued": found.get("letters:queued", {}).get(key, 0),
             "held": found.get("letters:held", {}).get(key, 0)} for key in sorted(waiting)]


def _target_row(target, counts, error, health):
    """One target's row of the dashboard: ``counts`` is ``{figure: n}`` with sent, delivered, bounced, queued …

    ``health``: its :class:`~app.models.TargetHealth`, or None.
    """
    row = {"target": target, **{name: counts.get(name, 0) for name in TARGET_COLUMNS}, "last_error": error}
    for name, empty in (("suspended_at", None), ("last_bounce", ""), ("complaint", ""), ("complained_at", None)):
        row[name] = getattr(health, name) if health is not None else empty
    return row


def _suspended_first(rows):
    # Stable: the campaign file's order otherwise.
    return sorted(rows, key=lambda row: row["suspended_at"] is None)


def dashboard_figures(campaign: "Campaign", now: datetime | None = None) -> dict[str, Any]:
    """Every figure the dashboard shows for ``campaign``, from the running totals (:mod:`app.totals`).

    The same numbers as :func:`counted_figures`, in a few indexed reads at
    any size.
    """
    now = now or utcnow()
    found = totals.figures(campaign.slug)

    def ranked(name):
        return sorted(found.get(name, {}).items(), key=lambda item: (-item[1], item[0]))

    status = found.get("status", {})
    health = target_health([target.key for target in campaign.targets])
    targets = []
    for target in campaign.targets:
        letters = {name.removeprefix("letters:"): keys[target.key]
                   for name, keys in found.items() if name.startswith("letters:") and target.key in keys}
        waiting = letters.get("failed") or letters.get("queued")
        targets.append(_target_row(target, letters, last_error(campaign.slug, target.key) if waiting else "",
                                   health.get(target.key)))
    return {
        "signatures": status.get(SignatureStatus.ACCEPTED, 0),
        "counter": tally.accepted(campaign.slug),
        # A delivered or bounced letter was sent too.
        "sent_total": sum(sum(found.get(f"letters:{status}", {}).values()) for status in WENT_OUT),
        "sent_today": found.get("sent_on", {}).get(now.date().isoformat(), 0),
        "per_day": sorted(found.get("day", {}).items()),
        "by_country": ranked("country"),
        "by_language": ranked("language"),
        "opt_ins": found.get("opt_in", {}).get("yes", 0),
        "edited": found.get("edited", {}).get("yes", 0),
        "held": status.get(SignatureStatus.HELD, 0),
        "unconfirmed": status.get(SignatureStatus.UNCONFIRMED, 0),
        "targets": _suspended_first(targets),
    }


def _counted_targets(campaign):
    """The per-target rows of :func:`counted_figures`, counted from the letters."""
    by_target = letters_by_target(campaign.slug)
    health = target_health([target.key for target in campaign.targets])
    targets = []
    for target in campaign.targets:
        statuses = by_target.get(target.key, {})
        counts = {**statuses, "queued": sum(statuses.get(s, 0) for s in QUEUED)}
        targets.append(_target_row(target, counts, last_error(campaign.slug, target.key), health.get(target.key)))
    return _suspended_first(targets)


def _signatures_with_status(campaign, status):
    return db.session.scalar(select(func.count(Signature.id)).where(
        Signature.campaign == campaign.slug, Signature.status == status))


def counted_figures(campaign: "Campaign", now: datetime | None = None) -> dict[str, Any]:
    """The dashboard's figures counted from the rows: what the running totals must equal (tests, checks).

    Scans every signature and letter of the campaign: seconds at a million.
    """
    now = now or utcnow()
    today = datetime.combine(now.date(), time())
    letters = select(func.count(Delivery.id)).where(
        Delivery.campaign == campaign.slug, Delivery.kind == "letter", Delivery.status.in_(WENT_OUT)
    )
    accepted = (Signature.campaign == campaign.slug) & (Signature.status == SignatureStatus.ACCEPTED)
    day = func.date(Signature.created_at)
    per_day = [(str(d), n) for d, n in db.session.execute(
        select(day, func.count()).where(accepted).group_by(day).order_by(day)
    ).all()]

    def grouped(column):
        return db.session.execute(
            select(column, func.count()).where(accepted).group_by(column).order_by(func.count().desc(), column)
        ).all()

    return {
        "signatures": _signatures_with_status(campaign, SignatureStatus.ACCEPTED),
        "counter": tally.accepted(campaign.slug),
        "sent_total": db.session.scalar(letters),
        "sent_today": db.session.scalar(letters.where(Delivery.sent_at >= today)),
        "per_day": per_day,
        "by_country": grouped(Signature.country),
        "by_language": grouped(Signature.language),
        "opt_ins": db.session.scalar(select(func.count(Signature.id)).where(accepted, Signature.opt_in.is_(True))),
        "edited": db.session.scalar(select(func.count(Signature.id)).where(accepted, Signature.edited.is_(True))),
        "held": _signatures_with_status(campaign, SignatureStatus.HELD),
        "unconfirmed": _signatures_with_status(campaign, SignatureStatus.UNCONFIRMED),
        "targets": _counted_targets(campaign),
    }
