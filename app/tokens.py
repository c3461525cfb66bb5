"""Signed links for one supporter: confirm, unsubscribe, see the letter's status.

A link carries the signature id signed with ``SECRET_KEY`` (itsdangerous),
with one salt per purpose, so a status link cannot be replayed as an
unsubscribe link, and an id cannot be guessed or counted up. The payload also
binds a digest of the email address, so if a deleted row's id is ever reused
the old link does not open the new supporter's data.

Status links differ in one way: they are shown on the thank-you page, where a
dropped submission's link must look like anyone's (see
:mod:`app.letter_status`). So what they point at, a signature id or a
stand-in's state, is encrypted, and both kinds have the same shape and length.
"""

import hashlib
import hmac
import secrets
import struct
from base64 import urlsafe_b64decode, urlsafe_b64encode
from datetime import UTC, datetime

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from .extensions import db
from .letter_status import StandIn
from .models import Signature

PURPOSES = ("confirm", "unsubscribe")


def _serializer(purpose):
    if purpose not in PURPOSES:
        raise ValueError(purpose)
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=f"clamor-{purpose}")


def _digest(signature):
    return hashlib.sha256(signature.email.lower().encode()).hexdigest()[:12]


def make_token(signature, purpose):
    """The token for ``signature`` and ``purpose`` (one of :data:`PURPOSES`)."""
    return _serializer(purpose).dumps([signature.id, _digest(signature)])


def load_signature(token, purpose):
    """The :class:`Signature` ``token`` was made for, or None if it is forged, mistyped or gone."""
    try:
        signature_id, digest = _serializer(purpose).loads(token)
    except (BadSignature, ValueError, TypeError):
        return None
    signature = db.session.get(Signature, signature_id) if isinstance(signature_id, int) else None
    if signature is None or _digest(signature) != digest:
        return None
    return signature


# Status links: [campaign slug, creation time, sealed (kind, number)]. Kind 0
# is a signature (number: its id); the others are a stand-in's status (number:
# the newest delivery id when it was made).
_KINDS = ("signature", "accepted", "held", "unconfirmed")
_BODY = struct.Struct(">BQ")


def _pad(nonce):
    # A one-time pad from HMAC-SHA256 keyed by SECRET_KEY and a fresh nonce:
    # the stdlib has no cipher, and this is all nine bytes need. The
    # serializer's signature stops anyone from altering them.
    key = current_app.config["SECRET_KEY"]
    key = key if isinstance(key, bytes) else key.encode()
    return hmac.new(key, b"clamor-status-link" + nonce, hashlib.sha256).digest()[:_BODY.size]


def _seal(kind, number):
    nonce = secrets.token_bytes(8)
    body = _BODY.pack(_KINDS.index(kind), number)
    return urlsafe_b64encode(nonce + bytes(a ^ b for a, b in zip(body, _pad(nonce)))).decode()


def _unseal(sealed):
    raw = urlsafe_b64decode(sealed.encode())
    nonce, body = raw[:8], raw[8:]
    kind, number = _BODY.unpack(bytes(a ^ b for a, b in zip(body, _pad(nonce))))
    return _KINDS[kind], number


def _seconds(moment):
    return int(moment.replace(tzinfo=UTC).timestamp())


def make_status_token(letter):
    """The status link's token for ``letter``: a :class:`Signature` or a :class:`StandIn`."""
    if isinstance(letter, StandIn):
        sealed = _seal(letter.status, letter.after_id)
    else:
        sealed = _seal("signature", letter.id)
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="clamor-status").dumps(
        [letter.campaign, _seconds(letter.created_at), sealed])


def load_letter(token):
    """The :class:`Signature` or :class:`StandIn` a status token was made for, or None if forged or gone."""
    try:
        slug, seconds, sealed = URLSafeSerializer(current_app.config["SECRET_KEY"], salt="clamor-status").loads(token)
        kind, number = _unseal(sealed)
        created_at = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
    except (BadSignature, ValueError, TypeError, IndexError, OverflowError, OSError, struct.error):
        return None
    if kind != "signature":
        return StandIn(slug, kind, number, created_at)
    signature = db.session.get(Signature, number)
    # Bound to the campaign and the second it was made, so a reused id does
    # not open another supporter's letter.
    if signature is None or signature.campaign != slug or _seconds(signature.created_at) != seconds:
        return None
    return signature
