"""Signed links for one supporter: confirm, unsubscribe, see the letter's status.

A link carries the signature id signed with ``SECRET_KEY`` (itsdangerous),
with one salt per purpose, so a status link cannot be replayed as an
unsubscribe link, and an id cannot be guessed or counted up. The payload also
binds a digest of the email address, so if a deleted row's id is ever reused
the old link does not open the new supporter's data.
"""

import hashlib

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from .extensions import db
from .models import Signature

PURPOSES = ("confirm", "unsubscribe", "status")


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
