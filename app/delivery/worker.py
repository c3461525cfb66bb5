"""The worker: a batch of claimed letters sent over one or more connections, in a loop or a thread.

Nothing is sent inside a web request. A worker (a thread in the web process,
or ``clamor deliver``) claims due rows (:mod:`app.delivery.queue`), builds each
letter (:mod:`app.delivery.letters`), and hands it to the backend that config
``DELIVERY`` names for the target's channel. Each outcome is recorded through
:mod:`app.states`.
"""

import functools
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from concurrent import futures
from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from .. import alarms, digests, states
from ..bounce_mailbox import fetch_when_due
from ..errors import TracebackThrottle
from ..extensions import db
from ..models import Delivery, utcnow
from ..security import redact_addresses
from ..states import DeliveryStatus
from .commits import Outcomes, commit_seconds
from .contract import PermanentFailure, TemporaryFailure
from .digest_letter import build_digest
from .letters import build_letter
from .queue import (
    _Presence,
    _wait_for_cap,
    _wait_for_office_hours,
    claim_due,
    hourly_counts,
    is_paused,
    retry_delay,
)
from .senders import _Senders, _Unchecked

# One logger for the whole package, named as before it was one.
log = logging.getLogger("app.delivery")


def connection_count(config: Mapping[str, Any]) -> int:
    """``DELIVERY_CONNECTIONS``, checked: a whole number, 1 or more; ValueError naming the key otherwise."""
    connections = config.get("DELIVERY_CONNECTIONS", 1)
    if not isinstance(connections, int) or isinstance(connections, bool) or connections < 1:
        raise ValueError(f"DELIVERY_CONNECTIONS must be a whole number of connections (1 or more), not {connections!r}")
    return connections


def deliver_due(app: Flask | None = None, limit: int | None = None) -> int:
    """Claim due deliveries, send them, record each outcome. Return how many were claimed.

    Returns 0 without claiming anything while delivery is paused; a batch
    already claimed when the pause begins is finished. Needs an app context.
    """
    app = app or current_app._get_current_object()
    config = app.config
    state = app.extensions["clamor"]
    state.refresh_campaigns()
    if is_paused():
        db.session.remove()
        return 0
    # Before the claim: a letter gathered into a digest is no longer due alone.
    digests.gather_due(state, config)
    # Checked at start-up too (app.create_app); again here, before anything is claimed.
    connections = connection_count(config)
    commit_seconds(config)
    ids = claim_due(limit or config["DELIVERY_BATCH_SIZE"], config["DELIVERY_LEASE_SECONDS"])
    if not ids:
        return 0
    senders = _Senders(app, connections)
    try:
        query = (
            select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)
            .options(selectinload(Delivery.signature))
        )
        batch = db.session.scalars(query).all()
        # The batch's rows are leased to this worker, so what was loaded stays
        # true. Detached, the objects take each transition of app.states
        # without the session ever flushing one (a query's autoflush would
        # write it in this thread's transaction, beside the writer's); the
        # writer writes them (app.delivery.commits).
        db.session.expunge_all()
        _send_batch(batch, state, config, senders.send, keep=2 * connections - 1)
    finally:
        senders.close()
        db.session.remove()
    return len(ids)


def _send_batch(batch, state, config, send, keep):
    """Send the claimed deliveries ``batch`` through ``send``, recording outcomes with at most ``keep`` in flight."""
    run = _BatchRun(batch, state, config, send)
    try:
        for done, delivery in enumerate(batch):
            if run.out_of_time():
                log.warning("the batch used most of its %ss lease; %s letters wait for the next claim",
                            config["DELIVERY_LEASE_SECONDS"], len(batch) - done)
                break
            run.start(delivery)
            # With several connections sending goes on in their threads
            # meanwhile (each has a letter queued behind the one it sends, so
            # none waits for this thread); with one, it went on here.
            # Outcomes are recorded here, in this thread, and written by the
            # outcomes' writer (app.delivery.commits).
            run.record_finished(keep)
        run.record_finished(0)
    finally:  # also when the batch stops on an error: what was sent stays recorded
        try:
            run.outcomes.finish()
        finally:
            run.log_sent()


class _BatchRun:
    """One batch being sent: what is in flight, each target's hourly count, the outcomes waiting for a commit."""

    def __init__(self, batch, state, config, send):
        self.state, self.config, self.send = state, config, send
        # Letters each target received in the last hour, counted once per
        # batch (one query for all its targets). Two workers may each send
        # up to a batch past the cap: good enough to keep a press office from
        # being flooded, without a query per letter. A letter counts from the moment it is handed to a
        # connection, so letters in flight on several connections cannot
        # overshoot the cap together.
        self.hourly = hourly_counts(batch, config)
        #: Target key -> when the next new letter to it may go, for targets with office hours.
        self.turns = {}
        #: (delivery, backend name, Future of its Receipt), oldest first.
        self.in_flight = []
        self.presence = _Presence(batch)
        #: Backend name -> ids of the letters it sent (logged once, at the batch's end).
        self.sent = defaultdict(list)
        self.outcomes = Outcomes(state, commit_seconds(config))
        # Stop sending while a fifth of the lease is left: past the lease
        # another worker may claim these letters, and both would send them.
        # What is left stays claimed until the lease ends, then is due again.
        self.stop_at = utcnow() + timedelta(seconds=config["DELIVERY_LEASE_SECONDS"] * 4 / 5)

    def out_of_time(self):
        """True once no more letters may be handed over (the lease is nearly over)."""
        return utcnow() >= self.stop_at

    def start(self, delivery):
        """Hand ``delivery`` to a connection, unless it was deleted or must wait (office hours, hourly cap)."""
        if not self.presence.still_claimed(delivery):
            return
        if (_wait_for_office_hours(delivery, self.state, self.config, self.turns)
                or _wait_for_cap(delivery, self.config, self.hourly)):
            self.outcomes.add(delivery)
            return
        self.hourly[delivery.target_key] += 1
        self._hand_over(delivery)

    def _hand_over(self, delivery):
        sent = _start_one(delivery, self.state, self.config,
                          functools.partial(self.send, checked_at=self.presence.checked_at))
        self.in_flight.append((delivery, *sent))

    def record_finished(self, keep):
        """Record the letters whose sending finished, waiting until at most ``keep`` are in flight.

        Each outcome is handed to the writer as soon as it is known (with
        DELIVERY_COMMIT_SECONDS, within that many seconds): a worker that dies
        loses only the outcomes of letters at the server (one with one
        connection, two per connection with more), held for a commit, or
        being committed (:class:`~app.delivery.commits.Outcomes`). A letter given back
        unsent (:class:`_Unchecked`) is handed over again if its row is still there.
        """
        while self.in_flight:
            if len(self.in_flight) > keep:
                self._wait_for_one()
            finished = [item for item in self.in_flight if item[2].done()]
            if not finished:
                break
            for item in finished:
                self.in_flight.remove(item)
                self._record(*item)

    def _wait_for_one(self):
        """Wait until a letter in flight finishes, committing the held outcomes when their time comes meanwhile."""
        sending = [outcome for _, _, outcome in self.in_flight]
        while not futures.wait(sending, self.outcomes.seconds_left(), futures.FIRST_COMPLETED).done:
            self.outcomes.commit()

    def _record(self, delivery, backend_name, outcome):
        if isinstance(outcome.exception(), _Unchecked):
            if not self.out_of_time() and self.presence.still_claimed(delivery, again=True):
                self._hand_over(delivery)
                return
            # Deleted, or left claimed until its lease ends (then it is due again).
            self.hourly[delivery.target_key] -= 1
            return
        # Set only now: a change waiting on a letter in flight would be
        # flushed by the next query, onto a row a forget may have deleted.
        if backend_name is not None:
            delivery.backend = backend_name
        _deliver_one(delivery, self.config, backend_name, outcome, self.outcomes.notify)
        if delivery.status != DeliveryStatus.SENT:
            self.hourly[delivery.target_key] -= 1
        else:
            self.sent[backend_name].append(delivery.id)
        self.outcomes.add(delivery)

    def log_sent(self):
        """One line per backend for the letters it sent in this batch (each letter's own line is at DEBUG).

        A line a letter, at a few hundred letters a second, was a tenth of the
        worker's time and more than journald lets a service log by default
        (10,000 messages in 30 s); failures and retries keep a line each.
        """
        for backend_name, ids in self.sent.items():
            log.info("%s letters sent by %s (deliveries %s to %s)", len(ids), backend_name, min(ids), max(ids))


def _start_one(delivery, state, config, send):
    """Build ``delivery``'s letter and hand it to ``send``; return (backend name, Future of the Receipt).

    What stops a letter before it is sent (its campaign is gone, no backend
    for its channel, a letter that cannot be built) is in the Future too, so
    every outcome is recorded in one place, :func:`_deliver_one`.
    """
    campaign = state.campaigns.get(delivery.campaign)
    backend_name = config["DELIVERY"].get(delivery.channel)
    try:
        if campaign is None:
            raise PermanentFailure(f"campaign {delivery.campaign!r} is no longer configured")
        if backend_name is None:
            raise TemporaryFailure(f"no backend configured for channel {delivery.channel!r} (config DELIVERY)")
        build = build_digest if delivery.kind == "digest" else build_letter
        return backend_name, send(backend_name, build(delivery, campaign, config))
    except Exception as exc:
        failed = futures.Future()
        failed.set_exception(exc)
        return backend_name, failed


def _deliver_one(delivery, config, backend_name, outcome, notify):
    """Record what sending ``delivery`` came to (``outcome``: :func:`_start_one`'s Future); hooks go to ``notify``."""
    try:
        receipt = outcome.result()
    except PermanentFailure as exc:
        _fail(delivery, exc, notify)
    except Exception as exc:
        if not isinstance(exc, TemporaryFailure):
            if delivery.kind in states.TARGET_KINDS:
                log.exception("delivery %s: unexpected error, will retry", delivery.id)
            else:
                # A traceback would print the supporter's address with the message.
                log.warning("delivery %s: unexpected error, will retry: %s: %s",
                            delivery.id, type(exc).__name__, error_text(delivery, exc))
            exc = TemporaryFailure(f"{type(exc).__name__}: {exc}")
        age = utcnow() - delivery.created_at
        if delivery.attempts >= config["DELIVERY_MAX_ATTEMPTS"]:
            _fail(delivery, exc, notify)
        elif age >= timedelta(seconds=config["DELIVERY_MAX_AGE"]):
            # RFC 5321 suggests giving up on mail after four or five days.
            _fail(delivery, TemporaryFailure(f"{exc} (gave up after {age.days} days: DELIVERY_MAX_AGE)"), notify)
        else:
            delay = retry_delay(delivery.attempts, config, exc.retry_after)
            states.requeued(delivery, error_text(delivery, exc), utcnow() + timedelta(seconds=delay))
            log.warning("delivery %s: temporary failure, retry in %.0fs: %s", delivery.id, delay, delivery.last_error)
    else:
        states.sent(delivery, receipt)
        log.debug("delivery %s sent by %s", delivery.id, backend_name)
        notify("letter_sent", delivery=delivery, receipt=receipt)


def _fail(delivery, exc, notify):
    states.failed(delivery, error_text(delivery, exc))
    log.error("delivery %s failed: %s", delivery.id, delivery.last_error)
    # Plugins get the error as it may be logged, without the original (whose
    # text, or its cause's, could quote the supporter's address).
    notify("letter_failed", delivery=delivery, error=type(exc)(delivery.last_error))


def error_text(delivery: Delivery, exc: BaseException) -> str:
    """What ``exc`` says, as it may be logged and stored in ``last_error``: a target's address at most.

    Mail to a supporter's own mailbox (every kind but "letter") fails with
    replies that quote the supporter's address: every address in them is
    redacted. A letter's error keeps the target's address, not the supporter's
    (a server may quote the Reply-To).
    """
    text = str(exc) or type(exc).__name__
    if delivery.kind not in states.TARGET_KINDS:
        return redact_addresses(text)
    signature = delivery.signature
    if signature is not None and signature.email:
        text = re.sub(re.escape(signature.email), "<supporter>", text, flags=re.IGNORECASE)
    return text


class DeliveryWorker:
    """Runs :func:`deliver_due` in a loop until stopped; ``wake()`` skips the wait.

    Used as a daemon thread inside the web process (``DELIVERY_WORKER =
    "thread"``) and in the foreground by ``clamor deliver``.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self._failures = TracebackThrottle()
        # Its own: the batch's first failure in an outage keeps its traceback.
        self._alarm_failures = TracebackThrottle()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run_forever(self) -> None:
        poll = self.app.config["DELIVERY_POLL_SECONDS"]
        bounces_due = alarms_due = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            # The bounce mailbox (BOUNCE_IMAP_URL), every BOUNCE_POLL_SECONDS; a failure logs a line, no more.
            bounces_due = fetch_when_due(self.app, bounces_due)
            if time.monotonic() >= alarms_due:
                alarms_due = time.monotonic() + alarms.CHECK_SECONDS
                self._check_alarms()
            try:
                with self.app.app_context():
                    claimed = deliver_due(self.app)
            except Exception as exc:
                # The database down, say: one line each poll, a traceback now and then.
                self._failures.error(log, "delivery worker: batch failed (%s: %s); trying again shortly",
                                     type(exc).__name__, str(exc).splitlines()[0][:300] if str(exc) else "",
                                     error=exc)
                claimed = 0
            if not claimed:
                self._wake.wait(poll)

    def _check_alarms(self) -> None:
        """:func:`app.alarms.check`; a failure is logged, and delivery goes on."""
        try:
            with self.app.app_context():
                alarms.check(self.app)
        except Exception as exc:
            self._alarm_failures.error(log, "delivery worker: the alarm check failed (%s: %s)", type(exc).__name__,
                                       str(exc).splitlines()[0][:300] if str(exc) else "", error=exc)

    def start_thread(self) -> None:
        """Start the loop in a daemon thread unless it is running already."""
        if self.thread is None or not self.thread.is_alive():
            with self._lock:
                if self.thread is None or not self.thread.is_alive():
                    self.thread = threading.Thread(target=self.run_forever, name="clamor-delivery", daemon=True)
                    self.thread.start()
