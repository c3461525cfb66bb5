"""The worker: a batch of claimed letters sent over one or more connections, in a loop or a thread.

Nothing is sent inside a web request. A worker (a thread in the web process,
or ``clamor deliver``) claims due rows (:mod:`app.delivery.queue`), builds each
letter (:mod:`app.delivery.letters`), and hands it to the backend that config
``DELIVERY`` names for the target's channel. Each outcome is recorded through
:mod:`app.states`.
"""

import logging
import queue
import re
import threading
import time
from concurrent import futures
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import inspect, select
from sqlalchemy.orm import selectinload

from .. import alarms, states
from ..errors import TracebackThrottle
from ..extensions import db
from ..models import Delivery, utcnow
from ..security import redact_addresses
from ..states import DeliveryStatus
from .contract import Letter, PermanentFailure, Receipt, TemporaryFailure
from .letters import build_letter
from .queue import (
    _commit,
    _still_claimed,
    _wait_for_cap,
    claim_due,
    is_paused,
    retry_delay,
)

# One logger for the whole package, named as before it was one.
log = logging.getLogger("app.delivery")


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
    connections = config.get("DELIVERY_CONNECTIONS", 1)
    if not isinstance(connections, int) or isinstance(connections, bool) or connections < 1:
        raise ValueError(f"DELIVERY_CONNECTIONS must be a whole number of connections (1 or more), not {connections!r}")
    ids = claim_due(limit or config["DELIVERY_BATCH_SIZE"], config["DELIVERY_LEASE_SECONDS"])
    if not ids:
        return 0
    backends = {}
    senders = _Senders(app, connections) if connections > 1 else None
    send = senders.send if senders else _sender_here(backends, state, config)
    try:
        # The batch's rows are leased to this worker, so what was loaded stays
        # true after each letter's commit; expiring it would reload every row
        # (and its signature) one query at a time. The session is removed below.
        db.session().expire_on_commit = False
        query = (
            select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)
            .options(selectinload(Delivery.signature))
        )
        _send_batch(db.session.scalars(query).all(), state, config, send,
                    keep=2 * connections - 1 if senders else 0)
    finally:
        if senders:
            senders.close()
        _close_backends(backends)
        db.session.remove()
    return len(ids)


def _send_batch(batch, state, config, send, keep):
    """Send the claimed deliveries ``batch`` through ``send``, recording outcomes with at most ``keep`` in flight."""
    # Letters each target received in the last hour, counted once per batch.
    # Two workers may each send up to a batch past the cap: good enough to keep
    # a press office from being flooded, without a query per letter. A letter
    # counts from the moment it is handed to a connection, so letters in
    # flight on several connections cannot overshoot the cap together.
    hourly = {}
    #: (delivery, backend name, Future of its Receipt), oldest first.
    in_flight = []
    # Stop sending while a fifth of the lease is left: past the lease
    # another worker may claim these letters, and both would send them.
    # What is left stays claimed until the lease ends, then is due again.
    lease = config["DELIVERY_LEASE_SECONDS"]
    stop_at = utcnow() + timedelta(seconds=lease * 4 / 5)
    for done, delivery in enumerate(batch):
        if utcnow() >= stop_at:
            log.warning("the batch used most of its %ss lease; %s letters wait for the next claim",
                        lease, len(batch) - done)
            break
        if not _still_claimed(delivery):
            continue
        if _wait_for_cap(delivery, config, hourly):
            _commit([delivery])
            continue
        hourly[delivery.target_key] += 1
        in_flight.append((delivery, *_start_one(delivery, state, config, send)))
        # Sending goes on in the connections' threads meanwhile (each has a
        # second letter queued, so none waits for this thread); outcomes
        # are recorded and committed here, in this thread and its session.
        _record_finished(in_flight, state, config, hourly, keep=keep)
    _record_finished(in_flight, state, config, hourly, keep=0)


def _record_finished(in_flight, state, config, hourly, keep):
    """Record the letters whose sending finished, waiting until at most ``keep`` are in flight.

    The letters found finished together are committed together: with several
    connections that is most of them, and one commit a letter would be most
    of this thread's work.
    """
    while in_flight:
        if len(in_flight) > keep:
            futures.wait([outcome for _, _, outcome in in_flight], return_when=futures.FIRST_COMPLETED)
        finished = [item for item in in_flight if item[2].done()]
        if not finished:
            return
        recorded = []
        for item in finished:
            in_flight.remove(item)
            delivery, backend_name, outcome = item
            # Expired by a rollback in _commit: its row may be gone as well.
            if inspect(delivery).expired and not _still_claimed(delivery, "while it was being sent"):
                continue
            _deliver_one(delivery, state, config, backend_name, outcome)
            if delivery.status != DeliveryStatus.SENT:
                hourly[delivery.target_key] -= 1
            recorded.append(delivery)
        _commit(recorded)


def _backend(backends, state, config, name):
    """The batch's instance of backend ``name`` in ``backends``, made on first use."""
    backend = backends.get(name)
    if backend is None:
        backend = backends[name] = state.backends[name](config)
    return backend


def _close_backends(backends):
    for backend in backends.values():
        try:
            backend.close()
        except Exception:
            log.exception("closing delivery backend %s failed", backend.name)


def _sender_here(backends, state, config):
    """``send(backend name, letter) -> Future``: sends at once, in this thread (DELIVERY_CONNECTIONS = 1)."""

    def send(name, letter):
        outcome = futures.Future()
        try:
            outcome.set_result(_backend(backends, state, config, name).send(letter))
        except Exception as exc:
            outcome.set_exception(exc)
        return outcome

    return send


class _Senders:
    """``connections`` threads, each with backends of its own (so an SMTP connection of its own).

    ``send(backend name, letter)`` hands a finished letter to whichever thread
    is free and returns a Future of its Receipt. The threads only send: they
    never touch the database, whose session belongs to the batch's thread.
    Each runs in an app context of its own (fax_email looks up its email backend).
    """

    def __init__(self, app, connections):
        self.jobs = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._run, args=(app,), name=f"clamor-send-{n}", daemon=True)
            for n in range(connections)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, app):
        backends = {}
        with app.app_context():
            state = app.extensions["clamor"]
            try:
                while (job := self.jobs.get()) is not None:
                    outcome, name, letter = job
                    try:
                        outcome.set_result(_backend(backends, state, app.config, name).send(letter))
                    except BaseException as exc:  # handed to the batch's thread, which decides
                        outcome.set_exception(exc)
            finally:
                _close_backends(backends)

    def send(self, name: str, letter: Letter) -> "futures.Future[Receipt]":
        outcome = futures.Future()
        self.jobs.put((outcome, name, letter))
        return outcome

    def close(self) -> None:
        """Let every thread finish what it was given, close its backends, and stop."""
        for _thread in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()



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
        delivery.backend = backend_name
        return backend_name, send(backend_name, build_letter(delivery, campaign, config))
    except Exception as exc:
        failed = futures.Future()
        failed.set_exception(exc)
        return backend_name, failed


def _deliver_one(delivery, state, config, backend_name, outcome):
    """Record what sending ``delivery`` came to: ``outcome`` is the Future :func:`_start_one` returned."""
    try:
        receipt = outcome.result()
    except PermanentFailure as exc:
        _fail(delivery, state, exc)
    except Exception as exc:
        if not isinstance(exc, TemporaryFailure):
            if delivery.kind == "letter":
                log.exception("delivery %s: unexpected error, will retry", delivery.id)
            else:
                # A traceback would print the supporter's address with the message.
                log.warning("delivery %s: unexpected error, will retry: %s: %s",
                            delivery.id, type(exc).__name__, error_text(delivery, exc))
            exc = TemporaryFailure(f"{type(exc).__name__}: {exc}")
        age = utcnow() - delivery.created_at
        if delivery.attempts >= config["DELIVERY_MAX_ATTEMPTS"]:
            _fail(delivery, state, exc)
        elif age >= timedelta(seconds=config["DELIVERY_MAX_AGE"]):
            # RFC 5321 suggests giving up on mail after four or five days.
            _fail(delivery, state, TemporaryFailure(f"{exc} (gave up after {age.days} days: DELIVERY_MAX_AGE)"))
        else:
            delay = retry_delay(delivery.attempts, config, exc.retry_after)
            states.requeued(delivery, error_text(delivery, exc), utcnow() + timedelta(seconds=delay))
            log.warning("delivery %s: temporary failure, retry in %.0fs: %s", delivery.id, delay, delivery.last_error)
    else:
        states.sent(delivery, receipt)
        log.info("delivery %s sent by %s", delivery.id, backend_name)
        _notify(state, "letter_sent", delivery=delivery, receipt=receipt)


def _fail(delivery, state, exc):
    states.failed(delivery, error_text(delivery, exc))
    log.error("delivery %s failed: %s", delivery.id, delivery.last_error)
    # Plugins get the error as it may be logged, without the original (whose
    # text, or its cause's, could quote the supporter's address).
    _notify(state, "letter_failed", delivery=delivery, error=type(exc)(delivery.last_error))


def error_text(delivery: Delivery, exc: BaseException) -> str:
    """What ``exc`` says, as it may be logged and stored in ``last_error``: a target's address at most.

    Mail to a supporter's own mailbox (every kind but "letter") fails with
    replies that quote the supporter's address: every address in them is
    redacted. A letter's error keeps the target's address, not the supporter's
    (a server may quote the Reply-To).
    """
    text = str(exc) or type(exc).__name__
    if delivery.kind != "letter":
        return redact_addresses(text)
    signature = delivery.signature
    if signature is not None and signature.email:
        text = re.sub(re.escape(signature.email), "<supporter>", text, flags=re.IGNORECASE)
    return text


def _notify(state, hook, **kwargs):
    try:
        getattr(state.plugin_manager.hook, hook)(**kwargs)
    except Exception:
        log.exception("a %s hook raised; the delivery's status stands", hook)


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
        alarms_due = 0.0
        while not self._stop.is_set():
            self._wake.clear()
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
