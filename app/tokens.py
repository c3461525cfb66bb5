"""Opaque links for one supporter: confirm, unsubscribe, see their letter.

A token is the signature's id and creation second, sealed with AES-GCM
(``cryptography``) under a key of its own per purpose (HKDF, :mod:`app.keys`),
the purpose also bound as associated data. Without the key nobody can read
what a token points at, forge one, or turn a status link into an unsubscribe
link; nothing in it is an address or a digest of one that could be tested
against a guess. Binding the creation second means an id reused after its row
was deleted does not open the new supporter's data.

Tokens expire where that makes sense (:func:`load_signature`): a confirm link
after ``CONFIRM_EXPIRY_DAYS``; a status link when the campaign's retention
ends; an unsubscribe link lives as long as the signature (consent) is kept.
"""

import binascii
import os
import struct
from base64 import urlsafe_b64decode, urlsafe_b64encode
from datetime import UTC, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

from .extensions import db
from .keys import subkey
from .models import Signature, utcnow
from .privacy import retention_ends

PURPOSES = ("confirm", "unsubscribe", "status")

_BODY = struct.Struct(">QQ")  # signature id, creation second
_NONCE_BYTES = 12


def _aead(purpose):
    if purpose not in PURPOSES:
        raise ValueError(purpose)
    return AESGCM(subkey(f"token:{purpose}"))


def _seconds(moment):
    return int(moment.replace(tzinfo=UTC).timestamp())


def make_token(signature: Signature, purpose: str) -> str:
    """The token for ``signature`` and ``purpose`` (one of :data:`PURPOSES`): 59 URL-safe characters."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _aead(purpose).encrypt(nonce, _BODY.pack(signature.id, _seconds(signature.created_at)), purpose.encode())
    return urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()


def _open(token, purpose):
    try:
        raw = urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4))
        plain = _aead(purpose).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], purpose.encode())
        return _BODY.unpack(plain)
    except (InvalidTag, binascii.Error, ValueError, struct.error, UnicodeEncodeError):
        return None


def load_signature(token: str | None, purpose: str) -> Signature | None:
    """The :class:`Signature` ``token`` was made for, or None if it is forged, mistyped, expired or gone."""
    opened = _open(token or "", purpose)
    if opened is None:
        return None
    signature_id, seconds = opened
    signature = db.session.get(Signature, signature_id)
    if signature is None or _seconds(signature.created_at) != seconds:
        return None
    if _expired(signature, purpose):
        return None
    return signature


def _expired(signature, purpose):
    config = current_app.config
    now = utcnow()
    if purpose == "confirm":
        return now > signature.created_at + timedelta(days=config["CONFIRM_EXPIRY_DAYS"])
    if purpose == "status":
        campaign = current_app.extensions["clamor"].campaigns.get(signature.campaign)
        ends = retention_ends(campaign, config["RETENTION_DAYS"]) if campaign else None
        return ends is not None and now >= ends
    return False
