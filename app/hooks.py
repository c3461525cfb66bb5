"""``POST /hooks/mailgun``: Mailgun's event webhooks make a sent letter delivered or bounced.

Off (404) until MAILGUN_WEBHOOK_SIGNING_KEY is set (a setting of the mailgun
plugin). Mailgun signs ``timestamp + token`` with that key, in the JSON body
(documentation.mailgun.com, "Securing Webhooks"); the signature does not
cover ``event-data``, so the one-time token is what stops a replay: a spent
token is stored (:class:`~app.models.UsedToken`) in the same transaction as
the event's effect, and a timestamp further than :data:`WINDOW` from now is
refused, so a token need only be remembered that long.

Answers: 200 for an event handled, ignored, or about no letter of ours; 406
(which Mailgun does not retry) for a bad, stale or replayed signature and for
a body that is not Mailgun's JSON, changing nothing.

A letter is found by the opaque ``v:clamor-letter`` variable the mailgun
backend sets on it (:func:`letter_variable`: the delivery id sealed with
AES-GCM under the plugin's subkey, so it names no supporter and cannot be
guessed or forged; Mailgun shows ``v:`` variables to recipients), else by the
message id Mailgun returned at sending (``provider_id``).
"""

import binascii
import hashlib
import hmac
import logging
import os
import struct
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Blueprint, abort, current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import states
from .bounces import notify_bounced
from .extensions import csrf, db, limiter
from .keys import subkey
from .models import Delivery, UsedToken, utcnow

log = logging.getLogger(__name__)

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
# A provider posts here, with its own signature: there is no form, no CSRF token.
csrf.exempt(bp)

#: How far a signature's timestamp may be from now, either way, in seconds.
WINDOW = 600
#: Per client address (Mailgun posts from many): generous, since Mailgun
#: retries what is refused with 429.
RATE_LIMIT = "600 per minute"
#: The ``v:`` variable (``user-variables`` in an event) that names the letter.
VARIABLE = "clamor-letter"
_PURPOSE = "plugin:mailgun"
_AD = b"clamor/mailgun-letter"


class Refused(ValueError):
    """A request that is not a genuine, fresh Mailgun event: answered 406."""


def letter_variable(delivery_id: int) -> str:
    """The opaque value of ``v:clamor-letter`` for the delivery ``delivery_id`` (needs an app context)."""
    nonce = os.urandom(12)
    sealed = AESGCM(subkey(_PURPOSE)).encrypt(nonce, struct.pack(">Q", delivery_id), _AD)
    return urlsafe_b64encode(nonce + sealed).decode().rstrip("=")


def letter_id(value: object) -> int | None:
    """The delivery id sealed in ``value`` by :func:`letter_variable`, or None for anything else."""
    if not isinstance(value, str) or len(value) > 100:
        return None
    try:
        raw = urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return struct.unpack(">Q", AESGCM(subkey(_PURPOSE)).decrypt(raw[:12], raw[12:], _AD))[0]
    except (binascii.Error, ValueError, InvalidTag, struct.error):
        return None


def verify(body: object, key: str, now: float | None = None) -> str:
    """Check ``body``'s Mailgun signature with ``key``; return the replay nonce to store. Raises :class:`Refused`."""
    signature = body.get("signature") if isinstance(body, dict) else None
    if not isinstance(signature, dict):
        raise Refused("no signature")
    timestamp, token, digest = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in (timestamp, token, digest)):
        raise Refused("an incomplete signature")
    key = key if isinstance(key, bytes) else str(key).encode()
    expected = hmac.new(key, f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    # Bytes: compare_digest refuses a str with non-ASCII characters (a 500).
    if not hmac.compare_digest(expected.encode(), str(digest).encode()):
        raise Refused("a bad signature")
    try:
        age = (now or time.time()) - int(timestamp)
    except ValueError:
        raise Refused("a timestamp that is no number") from None
    if abs(age) > WINDOW:
        raise Refused(f"a timestamp {age:.0f}s from now")
    nonce = "mailgun:" + hashlib.sha256(str(token).encode()).hexdigest()[:56]
    if db.session.get(UsedToken, nonce) is not None:
        raise Refused("a replayed token")
    return nonce


def find_letter(event: Mapping[str, Any]) -> Delivery | None:
    """The letter ``event`` (Mailgun's ``event-data``) is about: by ``v:clamor-letter``, else by message id."""
    variables = event.get("user-variables")
    delivery_id = letter_id(variables.get(VARIABLE)) if isinstance(variables, dict) else None
    if delivery_id is not None:
        return db.session.get(Delivery, delivery_id)
    message = event.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    message_id = headers.get("message-id") if isinstance(headers, dict) else None
    if not isinstance(message_id, str) or not message_id:
        return None
    # Mailgun returns "<id>" when sending, and the bare id in events.
    candidates = (message_id.strip("<>"), f"<{message_id.strip('<>')}>")
    return db.session.scalars(
        select(Delivery).where(Delivery.provider_id.in_(candidates), Delivery.kind.in_(states.TARGET_KINDS)).limit(1)
    ).first()


def _report(event):
    """The text of Mailgun's report: its delivery-status message (or description, or reason)."""
    status = event.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    text = status.get("message") or status.get("description") or event.get("reason") or ""
    code = status.get("code")
    return f"Mailgun {event.get('event')}: {f'{code} ' if code else ''}{text}".strip()[:2000]


def apply(delivery: Delivery, event: Mapping[str, Any]) -> bool:
    """Record ``event`` on ``delivery``; return True when it became bounced. Not committed.

    delivered → delivered; failed, permanent → bounced; failed, temporary,
    and complained → a note. Any other event changes nothing.
    """
    kind, report = event.get("event"), _report(event)
    if kind == "delivered":
        states.delivered(delivery, report)
    elif kind == "failed" and event.get("severity") == "permanent":
        return states.bounced(delivery, report)
    elif kind in ("failed", "complained"):
        states.reported(delivery, report)
        if kind == "complained":
            # The target is flagged too (TargetHealth); a complaint does not suspend.
            states.complained(delivery, report)
    return False


@bp.post("/mailgun")
@limiter.limit(RATE_LIMIT)
def mailgun() -> tuple[str, int]:
    """Take one Mailgun event (see the module's docstring for the answers)."""
    key = current_app.config.get("MAILGUN_WEBHOOK_SIGNING_KEY")
    if not key:
        abort(404)
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # JSON nested deeper than Python's parser goes: not Mailgun's.
        body = None
    try:
        nonce = verify(body, key)
        event = body.get("event-data")
        if not isinstance(event, dict):
            raise Refused("no event-data")
    except Refused as refused:
        log.warning("a Mailgun webhook refused: %s", refused)
        db.session.rollback()
        return "refused", 406
    delivery = find_letter(event)
    bounced = False
    if delivery is not None and delivery.kind in states.TARGET_KINDS:
        try:
            bounced = apply(delivery, event)
        except states.IllegalTransition as exc:
            # A report on a letter not sent yet (a resend by hand?): noted in the log only.
            log.warning("Mailgun event %s on delivery %s ignored: %s", event.get("event"), delivery.id, exc)
    db.session.add(UsedToken(nonce=nonce, expires_at=utcnow() + timedelta(seconds=2 * WINDOW)))
    try:
        db.session.commit()
    except IntegrityError:
        # The same token, posted twice at once: the other request won.
        db.session.rollback()
        return "refused", 406
    if bounced:
        notify_bounced(delivery)
    return "ok", 200

