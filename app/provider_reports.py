"""What a delivery provider reports about a letter it took: the public path for a plugin's webhook.

A provider (Mailgun, a fax gateway) tells of a letter's fate later, by
posting an event to a URL of the plugin's own (``register_blueprints``).
The plugin checks the provider's signature itself; then it finds the letter
with :func:`find_sent_letter` and records the report with
:func:`record_provider_report`, which also spends the provider's one-time
token in the same transaction, so a replayed event changes nothing. The
built-in mailgun plugin takes this path and no other.

A letter is found by the opaque value :func:`letter_variable` gave the
backend to send along (the delivery id sealed with AES-GCM: it names no
supporter and cannot be guessed or forged, since providers may show such
values to recipients), else by the message id the backend's
:class:`~app.delivery.Receipt` returned.
"""

import binascii
import logging
import os
import struct
from base64 import urlsafe_b64decode, urlsafe_b64encode
from datetime import timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import states
from .bounces import notify_bounced
from .extensions import db
from .keys import subkey
from .models import Delivery, UsedToken, utcnow

log = logging.getLogger(__name__)

#: What :func:`record_provider_report` records, by ``kind``.
REPORT_KINDS = ("delivered", "bounced", "problem", "complaint")
#: The longest one-time token :func:`record_provider_report` stores (the column's width).
TOKEN_LENGTH = 64
# The subkey's purpose predates this module (the mailgun plugin named it):
# a new name would orphan the variables of letters already sent.
_PURPOSE = "plugin:mailgun"
_AD = b"clamor/mailgun-letter"


def letter_variable(delivery_id: int) -> str:
    """An opaque value naming the delivery ``delivery_id``, for a provider to carry back (needs an app context).

    Different at every call; :func:`find_sent_letter` reads any of them.
    """
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


def find_sent_letter(variable: object = None, provider_id: object = None) -> Delivery | None:
    """The letter to a target (or digest) an event is about, or None: no letter of ours.

    By ``variable``, a value :func:`letter_variable` made, when it is one;
    else by ``provider_id``, the message id the backend's Receipt returned,
    with or without its angle brackets. Anything else (a number, a forged
    value, a supporter's own mail) finds nothing.
    """
    delivery_id = letter_id(variable)
    if delivery_id is not None:
        delivery = db.session.get(Delivery, delivery_id)
        return delivery if delivery is not None and delivery.kind in states.TARGET_KINDS else None
    if not isinstance(provider_id, str) or not provider_id.strip("<>"):
        return None
    bare = provider_id.strip("<>")
    return db.session.scalars(
        select(Delivery).where(Delivery.provider_id.in_((bare, f"<{bare}>")), Delivery.kind.in_(states.TARGET_KINDS))
        .limit(1)
    ).first()


def record_provider_report(delivery: Delivery | None, kind: str | None, report: str, *,
                           token: str | None = None, token_seconds: float = 1200) -> bool:
    """Record ``report`` on ``delivery`` as ``kind`` and spend ``token``, in one commit; False for a replay.

    ``kind``: "delivered"; "bounced" (a permanent failure: the letter is
    bounced and counts towards suspending its target); "problem" (a
    temporary failure or a delay: it becomes the letter's note); "complaint"
    (the recipient marked it as spam: a note, and the target is flagged);
    None, or ``delivery`` None, records nothing but still spends the token.
    ``report`` is the provider's words, kept as the letter's note: no
    supporter's address belongs in it. ``token`` (at most 64 characters, your
    plugin's name first: ``"myfax:" + a digest``) is remembered for
    ``token_seconds``; when it was spent already, nothing changes and the
    answer is False. A report on a letter not sent yet is logged and
    ignored. After a bounce is committed, ``letter_bounced`` is called.
    """
    if kind is not None and kind not in REPORT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(REPORT_KINDS)} or None, not {kind!r}")
    if token is not None and not 0 < len(token) <= TOKEN_LENGTH:
        raise ValueError(f"a token has 1 to {TOKEN_LENGTH} characters, not {len(token)}")
    bounced = False
    if delivery is not None and kind is not None:
        try:
            bounced = _record(delivery, kind, report[:2000])
        except states.IllegalTransition as exc:
            # A report on a letter not sent (a resend by hand?): noted in the log only.
            log.warning("a %s report on delivery %s ignored: %s", kind, delivery.id, exc)
            db.session.rollback()
    if token is not None:
        db.session.add(UsedToken(nonce=token, expires_at=utcnow() + timedelta(seconds=token_seconds)))
    try:
        db.session.commit()
    except IntegrityError:
        # The same token, posted twice at once: the other request won.
        db.session.rollback()
        return False
    if bounced:
        notify_bounced(delivery)
    return True


def _record(delivery, kind, report):
    """Change ``delivery`` for one report (not committed); True when it became bounced."""
    if kind == "delivered":
        states.delivered(delivery, report)
    elif kind == "bounced":
        return states.bounced(delivery, report)
    else:
        states.reported(delivery, report)
        if kind == "complaint":
            states.complained(delivery, report)
    return False
