"""What comes back to the bounce address: DSNs, other bounces, auto-replies, and the letter each is about.

:func:`read_report` classifies one message (bytes as the MTA or IMAP gave
them) without touching the database; :func:`apply` finds the letter it is
about and records it through :mod:`app.states`:

- a DSN (RFC 3464 ``multipart/report; report-type=delivery-status``, parsed by
  the standard library's ``message/delivery-status`` support): ``Action:
  failed`` or a 5.x.x ``Status`` is a bounce; ``delayed`` or 4.x.x a note;
- a mailer daemon's bounce in no standard form (``X-Failed-Recipients``, or
  from ``MAILER-DAEMON``/``postmaster``): a bounce, unless its subject says
  the mail is only delayed;
- an auto-reply (RFC 3834 ``Auto-Submitted`` other than ``no``,
  ``X-Autoreply``, ``X-Autorespond``, ``Precedence: auto_reply``, an "Out of
  office" subject): never a bounce, a note ``auto-reply: <subject>``;
- anything else about a letter: a note.

The letter is found by the VERP token of the address the message came to
(:mod:`app.verp`), else by the ``Message-ID`` of the returned original.
A message that matches no letter is for an organiser to read: the caller
keeps it (:func:`keep_unmatched`, or an IMAP folder). Supporters may be in
danger: a returned original quotes the supporter's name and address in
``From``/``Reply-To``; only the status and diagnostic text are stored, with
every address but the target's redacted and the supporter's name removed.
"""

import logging
import os
import re
import secrets
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.parser import HeaderParser
from email.utils import getaddresses
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from . import states, verp
from .extensions import db
from .models import Delivery, utcnow
from .security import redact_addresses

log = logging.getLogger(__name__)

#: What a message is (:attr:`Outcome.kind`).
PERMANENT, TEMPORARY, AUTO_REPLY, OTHER = "permanent", "temporary", "auto-reply", "other"
#: Headers naming the address a message was delivered to (where a VERP token is).
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To")
#: How much of a report is stored in a letter's note.
REPORT_LENGTH = 500
_AUTO_REPLY_SUBJECTS = ("out of office", "automatic reply", "auto-reply", "autoreply", "absence")
_DAEMONS = ("mailer-daemon", "postmaster")


@dataclass(frozen=True)
class Outcome:
    """What one message returned to the bounce address says (:func:`read_report`); nothing stored yet."""

    #: PERMANENT, TEMPORARY, AUTO_REPLY or OTHER.
    kind: str
    #: Status code and diagnostic (or the subject), unredacted: :func:`apply` redacts it before storing.
    report: str
    #: Addresses the message came to, from its headers (VERP candidates).
    recipients: tuple[str, ...] = ()
    #: The ``Message-ID`` of the returned original, if the report carried it.
    original_message_id: str = ""


@dataclass(frozen=True)
class Handled:
    """What :func:`apply` did with one message."""

    #: "bounced", "note", "ignored" (a letter not sent) or "unmatched" (no letter: keep the message).
    action: str
    delivery_id: int | None = None

    def line(self) -> str:
        """One line for ``clamor bounces read``: ``bounced: delivery N``, ``note: delivery N`` …"""
        return f"{self.action}: delivery {self.delivery_id}"


def read_report(raw: bytes) -> Outcome:
    """Classify the message ``raw`` (see the module's docstring). Never raises: an unreadable message is OTHER."""
    try:
        message = message_from_bytes(raw, policy=policy.default)
        recipients = _recipients(message)
        original = _original_message_id(message)
        subject = _header(message, "Subject")
    except Exception as exc:  # a message broken beyond the parser's own repairs: kept for a person
        log.warning("a bounce could not be parsed (%s); it is kept", type(exc).__name__)
        return Outcome(OTHER, "")
    dsn = _delivery_status(message)
    if dsn is not None:
        kind, report = dsn
    elif _from_daemon(message):
        delayed = "delay" in subject.lower() or "warning" in subject.lower()
        kind, report = (TEMPORARY if delayed else PERMANENT), subject
    elif _auto_reply(message, subject):
        kind, report = AUTO_REPLY, f"auto-reply: {subject}"
    else:
        kind, report = OTHER, f"a message to the bounce address: {subject}"
    return Outcome(kind, report, recipients, original)


def _header(message, name):
    try:
        return " ".join(str(message.get(name, "")).split())
    except Exception:  # a header the parser cannot even represent
        return ""


def _recipients(message):
    values = []
    for name in RECIPIENT_HEADERS:
        values.extend(str(value) for value in message.get_all(name, ()))
    return tuple(address for _, address in getaddresses(values) if address)


def _delivery_status(message):
    """(kind, report) from a DSN's per-recipient fields, the worst recipient first; None if it is no DSN."""
    if message.get_content_type() != "multipart/report" or message.get_param("report-type") != "delivery-status":
        return None
    fields = []
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            # The first block is about the message, the others one recipient each.
            fields.extend(block for block in part.get_payload()[1:] if isinstance(block, EmailMessage))
    if not fields:
        return None
    ranked = sorted(fields, key=_severity)
    worst = ranked[0]
    kind = PERMANENT if _severity(worst) == 0 else TEMPORARY
    status = _header(worst, "Status")
    diagnostic = _header(worst, "Diagnostic-Code")
    action = _header(worst, "Action").lower()
    return kind, " ".join(part for part in (f"DSN {action}", status, diagnostic) if part)


def _severity(fields):
    """0 for a permanent failure, 1 for a delay or any other report on one recipient."""
    action = _header(fields, "Action").lower()
    status = _header(fields, "Status")
    return 0 if action == "failed" or status.startswith("5.") else 1


def _original_message_id(message):
    """The Message-ID of the returned original (``message/rfc822`` or ``text/rfc822-headers``), or ""."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            value = _header(inner, "Message-ID") if isinstance(inner, EmailMessage) else ""
        elif kind == "text/rfc822-headers":
            value = _header(HeaderParser().parsestr(part.get_content()), "Message-ID")
        else:
            continue
        if value:
            return value
    return ""


def _from_daemon(message):
    if message.get("X-Failed-Recipients"):
        return True
    senders = getaddresses([str(value) for value in message.get_all("From", ())])
    return any(address.partition("@")[0].lower() in _DAEMONS for _, address in senders)


def _auto_reply(message, subject):
    auto_submitted = _header(message, "Auto-Submitted").lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if message.get("X-Autoreply") or message.get("X-Autorespond"):
        return True
    if _header(message, "Precedence").lower() == "auto_reply":
        return True
    return subject.lower().startswith(_AUTO_REPLY_SUBJECTS)


def find_letter(outcome: Outcome, recipient: str | None = None) -> Delivery | None:
    """The letter to a target ``outcome`` is about, or None (needs an app context).

    First the VERP token of ``recipient`` (the MTA's envelope recipient, when
    it told us) or of an address the message came to; else the returned
    original's Message-ID, which letters store with angle brackets.
    """
    bounce_address = current_app.config.get("BOUNCE_ADDRESS")
    if bounce_address:
        for address in ((recipient,) if recipient else ()) + outcome.recipients:
            delivery_id = verp.delivery_id_from(address, bounce_address)
            delivery = db.session.get(Delivery, delivery_id) if delivery_id is not None else None
            if delivery is not None and delivery.kind in states.TARGET_KINDS:
                return delivery
    message_id = outcome.original_message_id.strip().strip("<>")
    if not message_id:
        return None
    return db.session.scalars(
        select(Delivery)
        .where(Delivery.message_id.in_((f"<{message_id}>", message_id)), Delivery.kind.in_(states.TARGET_KINDS))
        .limit(1)
    ).first()


def stored_report(delivery: Delivery, report: str) -> str:
    """``report`` as it may be stored and shown: one line, cut short, no address but the target's, no supporter name."""
    text = " ".join(report.split())
    signature = delivery.signature
    if signature is not None and signature.name and len(signature.name.strip()) > 1:
        # As a whole word only: a short name must not eat into other words ("Li" in "failed").
        name = rf"(?<!\w){re.escape(signature.name.strip())}(?!\w)"
        text = re.sub(name, "<supporter>", text, flags=re.IGNORECASE)
    target = delivery.target_key
    # The target's own address stays (it says which mailbox failed); every other is redacted.
    hold = "\x00target\x00"
    text = re.sub(re.escape(target), hold, text, flags=re.IGNORECASE) if target else text
    text = redact_addresses(text).replace(hold, target)
    return text[:REPORT_LENGTH]


def apply(outcome: Outcome, recipient: str | None = None) -> Handled:
    """Record ``outcome`` on the letter it is about and commit; call ``letter_bounced`` after a bounce.

    A bounce of a letter not sent (``IllegalTransition``) changes nothing and
    counts as handled ("ignored"), with a log line. "unmatched": no letter,
    nothing changed; the caller keeps the message.
    """
    delivery = find_letter(outcome, recipient)
    if delivery is None:
        log.info("a %s report matches no letter; it is kept for an organiser", outcome.kind)
        return Handled("unmatched")
    report = stored_report(delivery, outcome.report)
    try:
        if outcome.kind == PERMANENT:
            became_bounced = states.bounced(delivery, report)
            action = "bounced"
        else:
            states.reported(delivery, report)
            became_bounced, action = False, "note"
    except states.IllegalTransition as exc:
        db.session.rollback()
        log.warning("a %s report on delivery %s ignored: %s", outcome.kind, delivery.id, exc)
        return Handled("ignored", delivery.id)
    db.session.commit()
    log.info("delivery %s: %s report recorded", delivery.id, outcome.kind)
    if became_bounced:
        notify_bounced(delivery)
    return Handled(action, delivery.id)


def handle(raw: bytes, recipient: str | None = None) -> Handled:
    """:func:`read_report` then :func:`apply`: one message, recorded and committed."""
    return apply(read_report(raw), recipient)


def notify_bounced(delivery: Delivery) -> None:
    """Call ``letter_bounced`` after the bounce was committed; a plugin's exception is logged, the status stands."""
    try:
        current_app.extensions["clamor"].plugin_manager.hook.letter_bounced(delivery=delivery, report=delivery.note)
    except Exception:
        log.exception("a letter_bounced hook raised; the delivery's status stands")


def keep_unmatched(raw: bytes, instance_path: str | os.PathLike[str]) -> Path:
    """Write ``raw`` to ``instance/bounces/unmatched/<UTC time>-<random>.eml`` (mode 0600, folders 0700); its path.

    For an organiser to read: it may quote a supporter's letter.
    """
    folder = Path(instance_path) / "bounces" / "unmatched"
    for path in (folder.parent, folder):
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
    path = folder / f"{utcnow():%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}.eml"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(raw)
    return path
