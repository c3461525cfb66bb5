"""The organisers' alarms: letters stuck in the queue, a delivery backend that fails every letter.

:func:`check` looks at the queue, raises an alarm whose condition holds, and
emails every organiser once when it does (through the outbox,
:func:`app.delivery.queue_organiser_emails`). A raised alarm stays raised,
without more email, while its condition holds; it is cleared when the
condition stops holding, and the next stall emails again. The delivery
worker calls it at most once a minute; ``clamor deliveries check-alarms``
calls it from cron or a test. Two alarms (docs/delivery.md, "Queue alarm"):

- ``queue``: a letter to a target has waited longer than QUEUE_ALERT_MINUTES
  to go out. Its wait counts from when it was queued (its first due time):
  a letter retried after failures is stuck as much as one nobody claims.
  A letter waiting for its target's TARGET_HOURLY_CAP (its note starts
  "waiting") is paced, not stuck: its wait counts from the end of that wait.
  While delivery is paused, nothing is stuck: an organiser stopped it.
- ``backend:<name>``: in the last :data:`BACKEND_FAILING_MINUTES`, the backend
  recorded at least one attempt and every one failed (temporary or
  permanent), with no letter sent (any kind of mail: it was all given to it).

If the failing backend is the one that carries the organisers' email, the
alarm email waits in the queue with the rest: every raise is also an ERROR
line in the log.
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .delivery.letters import queue_organiser_emails
from .delivery.queue import is_paused
from .extensions import db
from .models import Alarm, Delivery, utcnow
from .security import redact_addresses
from .states import TARGET_KINDS, WENT_OUT, DeliveryStatus

log = logging.getLogger(__name__)

#: The name of the alarm for letters stuck in the queue.
QUEUE = "queue"
#: The alarm of backend ``smtp`` is ``backend:smtp``.
BACKEND_PREFIX = "backend:"
#: How long a backend must have failed every letter for its alarm.
BACKEND_FAILING_MINUTES = 15
#: The delivery worker checks at most this often (seconds).
CHECK_SECONDS = 60


@dataclass(frozen=True)
class Finding:
    """An alarm whose condition holds now: its name, what to log, and the organisers' email."""

    name: str
    #: The campaign the email is about (the stuck letter's, the failing backend's last letter's).
    campaign: str
    #: English, for the log line; no supporter's address.
    summary: str
    #: ``render() -> (subject, body)`` in the current locale.
    render: Callable[[], tuple[str, str]]


def check(app: Flask) -> list[str]:
    """Raise the alarms whose condition holds and clear the others; return the names newly raised, sorted.

    Each newly raised alarm is committed with one email per organiser, in
    one transaction per alarm, and logged as an ERROR. Needs an app context.
    """
    now = utcnow()
    findings = {finding.name: finding for finding in (*queue_stall(app.config, now), *failing_backends(now))}
    raised = []
    for name, finding in sorted(findings.items()):
        if raise_alarm(name, now):
            log.error("alarm %s raised: %s", name, finding.summary)
            _tell_organisers(app, finding)
            raised.append(name)
        db.session.commit()
    for name in db.session.scalars(select(Alarm.name).where(Alarm.raised_at.is_not(None),
                                                            Alarm.cleared_at.is_(None))).all():
        if name not in findings and clear_alarm(name, now):
            log.warning("alarm %s cleared", name)
    db.session.commit()
    return raised


def raise_alarm(name: str, now: datetime) -> bool:
    """Mark alarm ``name`` raised at ``now`` unless it is raised already; True if this call raised it.

    One ``UPDATE … WHERE`` not raised: on PostgreSQL a second worker doing
    the same waits for the first one's commit, then finds the alarm raised
    and updates nothing, so exactly one of them emails. The alarm's row is
    made and committed the first time it is needed; the raise itself is not
    committed (the caller commits it with the organisers' email).
    """
    if db.session.get(Alarm, name) is None:
        try:
            db.session.execute(insert(Alarm).values(name=name))
            db.session.commit()
        except IntegrityError:  # another worker made the row first: it is there now
            db.session.rollback()
    not_raised = or_(Alarm.raised_at.is_(None), Alarm.cleared_at.is_not(None))
    return db.session.execute(
        update(Alarm).where(Alarm.name == name, not_raised).values(raised_at=now, cleared_at=None)
    ).rowcount == 1


def clear_alarm(name: str, now: datetime) -> bool:
    """Mark alarm ``name`` cleared at ``now`` if it is raised; True if this call cleared it. Not committed."""
    return db.session.execute(
        update(Alarm).where(Alarm.name == name, Alarm.raised_at.is_not(None), Alarm.cleared_at.is_(None))
        .values(cleared_at=now)
    ).rowcount == 1


def queue_stall(config: Mapping[str, Any], now: datetime) -> list[Finding]:
    """The ``queue`` alarm's finding, if the oldest stuck letter waited past QUEUE_ALERT_MINUTES; else []."""
    minutes = config.get("QUEUE_ALERT_MINUTES")
    if not minutes or is_paused():
        return []
    cutoff = now - timedelta(minutes=minutes)
    paced = Delivery.note.startswith("waiting")
    oldest = db.session.scalars(
        select(Delivery)
        .where(Delivery.kind.in_(TARGET_KINDS), Delivery.status == DeliveryStatus.PENDING,
               or_(and_(paced, Delivery.next_attempt_at <= cutoff), and_(~paced, Delivery.created_at <= cutoff)))
        .order_by(Delivery.id).limit(1)
    ).first()
    if oldest is None:
        return []
    since = oldest.next_attempt_at if oldest.note.startswith("waiting") else oldest.created_at
    waited = int((now - since).total_seconds() // 60)
    error = redact_addresses(oldest.last_error)
    letter_id, target = oldest.id, oldest.target_key

    def render():
        subject = _("Letters are stuck: one has waited %(minutes)s minutes to go out", minutes=waited)
        body = [_("The oldest letter waiting to go out (#%(id)s, to %(target)s) has waited %(minutes)s minutes, "
                  "longer than QUEUE_ALERT_MINUTES (%(limit)s).", id=letter_id, target=target, minutes=waited,
                  limit=minutes),
                _("Check that a delivery worker runs (clamor deliver) and see where letters stand with "
                  "clamor deliveries.")]
        if error:
            body.append(_("Its last error: %(error)s", error=error))
        return subject, "\n\n".join([*body, _once()])

    summary = f"letter #{letter_id} to {target} has waited {waited} minutes" + (f"; last error: {error}" if error
                                                                               else "")
    return [Finding(QUEUE, oldest.campaign, summary, render)]


def failing_backends(now: datetime) -> list[Finding]:
    """A finding per backend that failed every attempt of the last :data:`BACKEND_FAILING_MINUTES`."""
    start = now - timedelta(minutes=BACKEND_FAILING_MINUTES)
    failure = or_(Delivery.status == DeliveryStatus.FAILED,
                  and_(Delivery.status == DeliveryStatus.PENDING, Delivery.last_error != ""))
    success = and_(Delivery.status.in_(WENT_OUT), Delivery.sent_at >= start)
    counts = db.session.execute(
        select(Delivery.backend, func.sum(case((failure, 1), else_=0)), func.sum(case((success, 1), else_=0)))
        .where(Delivery.updated_at >= start, Delivery.backend != "")
        .group_by(Delivery.backend)
    ).all()
    return [_backend_finding(backend, failures, start)
            for backend, failures, successes in sorted(counts) if failures and not successes]


def _backend_finding(backend, failures, start):
    """The ``backend:<name>`` finding, with the last error of the backend's latest failed letter."""
    latest = db.session.scalars(
        select(Delivery).where(Delivery.backend == backend, Delivery.updated_at >= start, Delivery.last_error != "")
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc()).limit(1)
    ).first()
    error = redact_addresses(latest.last_error if latest else "")
    minutes = BACKEND_FAILING_MINUTES

    def render():
        subject = _("The delivery backend %(backend)s has failed every letter for %(minutes)s minutes",
                    backend=backend, minutes=minutes)
        body = [_("In the last %(minutes)s minutes every letter given to the delivery backend %(backend)s "
                  "failed (%(failures)s letters), and none went out.", minutes=minutes, backend=backend,
                  failures=failures),
                _("Its last error: %(error)s", error=error),
                _("Check the backend's settings and that its server answers (clamor doctor), and see where "
                  "letters stand with clamor deliveries."),
                _once()]
        return subject, "\n\n".join(body)

    summary = f"backend {backend} failed {failures} letters in {minutes} minutes, none sent; last error: {error}"
    return Finding(BACKEND_PREFIX + backend, latest.campaign if latest else "", summary, render)


def _once():
    return _("You get this email once per stall: another comes only if letters stall again after this is over.")


def _tell_organisers(app, finding):
    """Queue the finding's email to every organiser, in its campaign's default language (not committed)."""
    campaigns = app.extensions["clamor"].campaigns
    campaign = campaigns.get(finding.campaign) or next(iter(campaigns.values()), None)
    if campaign is None:
        log.error("alarm %s: no campaign is loaded, so no organiser can be emailed", finding.name)
        return
    with force_locale(campaign.default_language):
        subject, body = finding.render()
    queue_organiser_emails(campaign.slug, app.config, subject, body)
