"""Letters, the delivery backend contract, and the worker that sends them.

Nothing is sent inside a web request. A signature stores one ``Delivery`` row
per target; a worker (a thread in the web process, or ``clamor deliver``)
claims due rows with a lease, builds each :class:`Letter` in the letter's own
language, and hands it to the backend that config ``DELIVERY`` names for the
target's channel. A letter accepted is a letter delivered or visibly failed.
"""

import logging
import queue
import random
import re
import secrets
import threading
from concurrent import futures
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy

from babel import Locale
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import bindparam, delete, func, inspect, or_, select, update
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from . import mailbytes
from .errors import TracebackThrottle
from .extensions import db
from .models import Delivery, DeliveryPause, utcnow
from .security import redact_addresses

log = logging.getLogger(__name__)


class TemporaryFailure(Exception):
    """The letter could not be sent now; try again later.

    ``retry_after``: seconds the provider asked us to wait, or None.
    """

    def __init__(self, reason, retry_after=None):
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentFailure(Exception):
    """The letter can never be sent as it is (a refused recipient, bad credentials)."""


@dataclass(frozen=True)
class Receipt:
    """What a backend returns when it accepted a letter."""

    #: The provider's id for the message (Mailgun's id, the SMTP queue reply …).
    provider_id: str = ""
    accepted_at: datetime = field(default_factory=utcnow)
    #: A note for organisers, e.g. "queued for faxing".
    note: str = ""


@dataclass(frozen=True)
class Letter:
    """One finished letter to one target: plain strings only, already translated."""

    delivery_id: int
    campaign: str
    language: str
    channel: str
    from_name: str
    from_address: str
    reply_to_name: str
    reply_to_address: str
    to_name: str
    #: The target's email address, or its fax number for the fax channel.
    to_address: str
    subject: str
    body: str
    message_id: str
    date: datetime
    #: Which try this is (1 for the first); lets a backend give up on an
    #: error that is temporary only a few times (Mailgun's 404).
    attempt: int = 1
    #: ``(filename, MIME type, bytes)`` triples, e.g. the PDF a fax gateway faxes.
    attachments: tuple = ()
    #: The target's address or fax number from the campaign, even when
    #: ``to_address`` is TEST_MODE_RECIPIENT.
    target_key: str = ""

    def as_bytes(self, to_address=None):
        """Return the letter as the bytes of an email (RFC 5322, CRLF line ends, ASCII only).

        ``to_address`` overrides the recipient (a fax gateway's address).
        Clamor writes every header itself (:mod:`app.mailbytes`): display
        names and the subject are encoded, never decoded, so nothing a
        supporter typed can become a header, an address or a body. Headers:
        From, Reply-To, To, Subject, Date, Message-ID, MIME-Version,
        Content-Language, Content-Type, Content-Transfer-Encoding. Attachments
        follow the text as base64 parts of a multipart/mixed message. Raises
        :class:`PermanentFailure` when the letter cannot be written as email
        (a line break in a name, an address that is not one): trying again
        would not change that.
        """
        try:
            return mailbytes.letter_bytes(self, to_address)
        except ValueError as exc:
            raise PermanentFailure(f"the letter cannot be written as email: {exc}") from exc

    def as_email(self, to_address=None):
        """Return the letter as an :class:`~email.message.EmailMessage`, for plugins that want one.

        It is :meth:`as_bytes` parsed back (``policy.default`` that never
        refolds what it parsed), so it holds exactly what would be sent, and
        writing it out again (``as_bytes()``, ``mailbox``) gives the same
        headers. Raises :class:`PermanentFailure` as :meth:`as_bytes` does.
        """
        return message_from_bytes(self.as_bytes(to_address), policy=_PARSED)


#: Parsing what Clamor wrote: policy.default, but a header it parsed is written
#: back as it came, never refolded (refolding decodes encoded-words first),
#: with the CRLF line ends it came with.
_PARSED = email_policy.default.clone(refold_source="none", linesep="\r\n")


class DeliveryBackend:
    """Base class for a way of sending letters. Plugins subclass it.

    A backend is made once per worker batch with the app's config, sends any
    number of letters, and is closed at the end of the batch.
    """

    #: The name config ``DELIVERY`` uses to pick this backend.
    name = ""
    #: A human name for organisers (``clamor plugins`` shows it).
    verbose_name = ""
    #: What the supporter's own page says of a letter this backend accepted,
    #: a lazy-translated string; None: "sent". A backend whose acceptance is
    #: not yet delivery says so (``fax_email``: "queued for faxing by the gateway").
    sent_label = None
    #: True for a backend that hands its letters to another registered backend
    #: (``fax_email`` sends its gateway email through ``FAX_VIA``). The core
    #: then registers, for each app, a subclass whose :attr:`backends` is that
    #: app's registry; nothing else needs to reach for it.
    needs_backends = False
    #: name -> class of every backend the app registered (read-only); None
    #: unless :attr:`needs_backends`.
    backends = None
    #: True if this backend delivers mail whose addresses have a non-ASCII
    #: local part (``ПРИМЕР@example.org``: SMTPUTF8, RFC 6531) to the
    #: supporter and in Reply-To. The action form refuses such addresses while
    #: the backend of ``DELIVERY["email"]`` says False.
    smtputf8 = False

    def __init__(self, config):
        """Read this backend's own keys from ``config`` (the Flask config).

        Every key the plugin declared in ``register_settings`` is present (its
        default unless the deployment set it). Raise :class:`app.ConfigError`
        naming the keys when they cannot work: start-up makes each backend a
        channel in use names once, and stops with that message.
        """
        self.config = config

    def send(self, letter):
        """Send ``letter`` and return a :class:`Receipt`.

        Raise :class:`TemporaryFailure` when trying again later may work, and
        :class:`PermanentFailure` when it never will. Any other exception counts
        as temporary.
        """
        raise NotImplementedError

    def close(self):
        """Release connections; called after each batch."""


_SPACES = re.compile(r"\s+")


def one_line(value):
    """Collapse every run of whitespace (CR and LF included) into one space."""
    return _SPACES.sub(" ", value or "").strip()


def new_message_id(sender_address):
    """A fresh Message-ID, ``<128 random bits in hex@the sender's domain>``; stored once per delivery.

    Nothing else goes into it: ``make_msgid`` would tell every target the
    time of signing and the worker's process id.
    """
    domain = sender_address.rpartition("@")[2]
    try:
        domain = mailbytes.addr_spec(f"x@{domain}").partition("@")[2]
    except ValueError:
        domain = "localhost"
    return f"<{secrets.token_hex(16)}@{domain}>"


def country_name(code, language):
    """The name of ISO country ``code`` in ``language`` (CLDR), or "" for none."""
    if not code:
        return ""
    return Locale.parse(language).territories.get(code, code)


def build_letter(delivery, campaign, config):
    """Build the :class:`Letter` for ``delivery`` in the language of its target.

    The supporter's text is sent as written; the subject and the signature block
    are rendered inside ``force_locale`` of the letter's language, never the
    worker's default. With ``TEST_MODE_RECIPIENT`` set the letter goes to that
    address instead, its subject marked "[TEST] ".
    """
    if delivery.kind != "letter":
        return _mailbox_letter(delivery, campaign, config)
    test_recipient = config.get("TEST_MODE_RECIPIENT")
    signature = delivery.signature
    target = next((t for t in campaign.targets if t.key == delivery.target_key), None)
    to_name = target.name if target else ""
    language = campaign.letter_language(target) if target else campaign.default_language
    with force_locale(language):
        text = campaign.text(language)
        block = [
            one_line(signature.name),
            one_line(signature.organisation),
            country_name(signature.country, language),
            # A fax is printed and filed: the supporter's address stays out of
            # it (an email letter carries it in Reply-To anyway).
            signature.email if delivery.channel != "fax" else "",
        ]
        body = signature.message.strip() + "\n\n" + "\n".join(line for line in block if line) + "\n"
        return Letter(
            delivery_id=delivery.id,
            campaign=campaign.slug,
            language=language,
            channel=delivery.channel,
            from_name=_("%(name)s via %(campaign)s", name=one_line(signature.name), campaign=one_line(text.short_name)),
            from_address=config["SENDER_ADDRESS"],
            reply_to_name=one_line(signature.name),
            reply_to_address=signature.email,
            to_name=to_name,
            to_address=test_recipient or delivery.target_key,
            subject=("[TEST] " if test_recipient else "") + one_line(text.subject),
            body=body,
            message_id=delivery.message_id,
            date=utcnow(),
            attempt=delivery.attempts,
            target_key=delivery.target_key,
        )


def _mailbox_letter(delivery, campaign, config):
    # Mail to the supporter's own mailbox (confirmation, receipt, reminder).
    # Its text was rendered in the request, in the supporter's language; the
    # worker only wraps it, so it never translates in its own locale. Nothing
    # the supporter typed goes in it, not even their name: the form must not
    # be a way to mail anyone any text from the union's address.
    signature = delivery.signature
    text = campaign.text(signature.language)
    sender = one_line(campaign.sender or text.short_name)
    return Letter(
        delivery_id=delivery.id,
        campaign=campaign.slug,
        language=signature.language,
        channel=delivery.channel,
        from_name=sender,
        from_address=config["SENDER_ADDRESS"],
        reply_to_name=sender,
        reply_to_address=config["SENDER_ADDRESS"],
        to_name="",
        to_address=signature.email,
        subject=one_line(delivery.subject),
        body=delivery.body,
        message_id=delivery.message_id,
        date=utcnow(),
    )


#: Kinds of Delivery that go to the supporter's own mailbox, not to a target.
MAILBOX_KINDS = ("confirmation", "receipt", "reminder")


def queue_mailbox_email(signature, config, kind, subject, body):
    """Add an email to ``signature``'s own mailbox (one of :data:`MAILBOX_KINDS`) with finished text; not committed.

    ``signature`` must have been flushed (it needs its id).
    """
    if kind not in MAILBOX_KINDS:
        raise ValueError(kind)
    # By id, not through ``signature.deliveries``: appending would load an
    # earlier signature's letters first, and a repeat signer's answer must
    # cost what a new signer's costs (app/signing.py).
    db.session.add(
        Delivery(
            signature_id=signature.id,
            campaign=signature.campaign,
            kind=kind,
            target_key=signature.email,
            channel="email",
            status="pending",
            message_id=new_message_id(config["SENDER_ADDRESS"]),
            subject=subject,
            body=body,
        )
    )


def retry_delay(attempts, config, retry_after=None):
    """Seconds to wait after the ``attempts``-th failed try: full jitter, capped.

    A provider's ``retry_after`` is a floor, and so is one second (or the
    base, if smaller): a draw of ~0 would retry at once, hammering a server
    that just said "later".
    """
    base = config["DELIVERY_RETRY_BASE"]
    ceiling = min(config["DELIVERY_RETRY_CAP"], base * 2 ** max(attempts - 1, 0))
    delay = random.uniform(0, ceiling)
    return max(delay, min(1.0, base), retry_after or 0)


def claim_due(limit, lease_seconds):
    """Atomically claim up to ``limit`` due deliveries and return their ids.

    One ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``:
    PostgreSQL skips rows another worker holds; SQLite has no row locks (the
    clause is not rendered) and serialises writers, so the statement is atomic
    there as well. A lease that ran out (its worker died) is due again.
    """
    now = utcnow()
    due = (
        select(Delivery.id)
        .where(
            or_(
                (Delivery.status == "pending") & (Delivery.next_attempt_at <= now),
                (Delivery.status == "sending") & (Delivery.lease_until < now),
            )
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(
            status="sending",
            lease_until=now + timedelta(seconds=lease_seconds),
            attempts=Delivery.attempts + 1,
        )
        .returning(Delivery.id),
        execution_options={"synchronize_session": False},
    )
    ids = sorted(claimed.scalars())
    db.session.commit()
    return ids


def is_paused():
    """True while ``clamor deliveries pause`` is in force (needs an app context)."""
    return db.session.scalar(select(func.count()).select_from(DeliveryPause)) > 0


def set_paused(paused):
    """Pause or resume delivery for every worker on this database, and commit."""
    if paused:
        if not is_paused():
            db.session.add(DeliveryPause())
    else:
        db.session.execute(delete(DeliveryPause))
    db.session.commit()


def deliver_due(app=None, limit=None):
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
    # Letters each target received in the last hour, counted once per batch.
    # Two workers may each send up to a batch past the cap: good enough to keep
    # a press office from being flooded, without a query per letter. A letter
    # counts from the moment it is handed to a connection, so letters in
    # flight on several connections cannot overshoot the cap together.
    hourly = {}
    #: (delivery, backend name, Future of its Receipt), oldest first.
    in_flight = []
    try:
        # The batch's rows are leased to this worker, so what was loaded stays
        # true after each letter's commit; expiring it would reload every row
        # (and its signature) one query at a time. The session is removed below.
        db.session().expire_on_commit = False
        query = (
            select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)
            .options(selectinload(Delivery.signature))
        )
        # Stop sending while a fifth of the lease is left: past the lease
        # another worker may claim these letters, and both would send them.
        # What is left stays claimed until the lease ends, then is due again.
        lease = config["DELIVERY_LEASE_SECONDS"]
        stop_at = utcnow() + timedelta(seconds=lease * 4 / 5)
        batch = db.session.scalars(query).all()
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
            _record_finished(in_flight, state, config, hourly, keep=2 * connections - 1 if senders else 0)
        _record_finished(in_flight, state, config, hourly, keep=0)
    finally:
        if senders:
            senders.close()
        _close_backends(backends)
        db.session.remove()
    return len(ids)


def _commit(deliveries):
    """Commit the outcomes of ``deliveries`` (one transaction: the letters that finished together).

    A letter deleted while it was being sent (``clamor forget``) has no row to
    take its outcome: the others are then committed one by one without it.
    """
    try:
        db.session.commit()
        return
    except StaleDataError:
        pass
    # The rollback forgets every change, so keep them first.
    changes = [(delivery, _changes(delivery)) for delivery in deliveries]
    db.session.rollback()
    for delivery, values in changes:
        if not _still_claimed(delivery, "while it was being sent"):
            continue
        for key, value in values.items():
            setattr(delivery, key, value)
        try:
            db.session.commit()
        except StaleDataError:
            db.session.rollback()
            log.info("delivery %s was deleted while it was being sent", inspect(delivery).identity[0])


def _changes(delivery):
    """The attributes of ``delivery`` changed since it was loaded, and their new values."""
    return {attr.key: attr.value for attr in inspect(delivery).attrs if attr.history.has_changes()}


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
            if delivery.status != "sent":
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

    def send(self, name, letter):
        outcome = futures.Future()
        self.jobs.put((outcome, name, letter))
        return outcome

    def close(self):
        """Let every thread finish what it was given, close its backends, and stop."""
        for _thread in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()


def _wait_for_cap(delivery, config, hourly):
    """Put ``delivery`` back in the queue if its target had its hourly fill.

    Waiting is not a failed attempt: the claim's attempt is given back. Returns
    True when the letter waits.
    """
    cap = config["TARGET_HOURLY_CAP"] if delivery.kind == "letter" else 0  # a supporter's own email is not capped
    key = delivery.target_key
    if key not in hourly:
        hourly[key] = db.session.scalar(select(func.count()).where(sent_in_last_hour(key))) if cap else 0
    if not cap or hourly[key] < cap:
        return False
    oldest = db.session.scalar(select(func.min(Delivery.sent_at)).where(sent_in_last_hour(key))) or utcnow()
    delivery.status = "pending"
    delivery.lease_until = None
    delivery.attempts -= 1
    delivery.next_attempt_at = oldest + timedelta(hours=1, seconds=1)
    delivery.last_error = f"waiting: {key} had {hourly[key]} letters in the last hour (TARGET_HOURLY_CAP)"
    return True


def sent_in_last_hour(key):
    """The WHERE clause of letters sent to ``key`` in the last hour (what TARGET_HOURLY_CAP counts)."""
    # Built only when a query needs it: building the expression costs more
    # than checking the batch's count.
    hour_ago = utcnow() - timedelta(hours=1)
    return (Delivery.target_key == key) & (Delivery.status == "sent") & (Delivery.sent_at > hour_ago)


#: Does this delivery's row still exist? A Core statement: four times cheaper
#: than the ORM query, once per letter.
_STILL_THERE = select(Delivery.__table__.c.id).where(Delivery.__table__.c.id == bindparam("id"))


def _still_claimed(delivery, when="before it was sent"):
    """False when ``delivery`` was deleted since the batch was claimed; it must not go out then.

    ``clamor forget`` deletes a supporter's unsent letters, in flight or not:
    one primary-key read per letter keeps the rest of a batch from sending
    them anyway.
    """
    delivery_id = inspect(delivery).identity[0]
    if db.session.execute(_STILL_THERE, {"id": delivery_id}).first() is not None:
        return True
    db.session.expunge(delivery)
    log.info("delivery %s was deleted %s; skipped", delivery_id, when)
    return False


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
            delivery.status = "pending"
            delivery.lease_until = None
            delivery.last_error = error_text(delivery, exc)
            delay = retry_delay(delivery.attempts, config, exc.retry_after)
            delivery.next_attempt_at = utcnow() + timedelta(seconds=delay)
            log.warning("delivery %s: temporary failure, retry in %.0fs: %s", delivery.id, delay, delivery.last_error)
    else:
        delivery.status = "sent"
        delivery.lease_until = None
        delivery.sent_at = receipt.accepted_at
        delivery.provider_id = receipt.provider_id
        delivery.last_error = receipt.note
        log.info("delivery %s sent by %s", delivery.id, backend_name)
        _notify(state, "letter_sent", delivery=delivery, receipt=receipt)


def _fail(delivery, state, exc):
    delivery.status = "failed"
    delivery.lease_until = None
    delivery.last_error = error_text(delivery, exc)
    log.error("delivery %s failed: %s", delivery.id, delivery.last_error)
    # Plugins get the error as it may be logged, without the original (whose
    # text, or its cause's, could quote the supporter's address).
    _notify(state, "letter_failed", delivery=delivery, error=type(exc)(delivery.last_error))


def error_text(delivery, exc):
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


def queue_deliveries(signature, campaign, config, status="pending"):
    """Add one Delivery per target of ``campaign`` to ``signature`` (not committed)."""
    for target in campaign.targets:
        signature.deliveries.append(
            Delivery(
                campaign=campaign.slug,
                target_key=target.key,
                channel=target.channel,
                status=status,
                message_id=new_message_id(config["SENDER_ADDRESS"]),
            )
        )


class DeliveryWorker:
    """Runs :func:`deliver_due` in a loop until stopped; ``wake()`` skips the wait.

    Used as a daemon thread inside the web process (``DELIVERY_WORKER =
    "thread"``) and in the foreground by ``clamor deliver``.
    """

    def __init__(self, app):
        self.app = app
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.thread = None
        self._failures = TracebackThrottle()

    def wake(self):
        self._wake.set()

    def stop(self):
        self._stop.set()
        self._wake.set()

    def run_forever(self):
        poll = self.app.config["DELIVERY_POLL_SECONDS"]
        while not self._stop.is_set():
            self._wake.clear()
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

    def start_thread(self):
        """Start the loop in a daemon thread unless it is running already."""
        if self.thread is None or not self.thread.is_alive():
            with self._lock:
                if self.thread is None or not self.thread.is_alive():
                    self.thread = threading.Thread(target=self.run_forever, name="clamor-delivery", daemon=True)
                    self.thread.start()
