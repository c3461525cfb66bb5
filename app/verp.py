"""VERP: each letter's envelope sender names the letter, so its bounce finds it.

With ``BOUNCE_ADDRESS = "bounces@union.org"`` a letter's SMTP ``MAIL FROM`` is
``bounces+<token>@union.org``; a mail server that cannot deliver it sends the
report there (RFC 5321 §4.5.5), and :func:`delivery_id_from` reads the letter
back from the address the report came to, however non-standard the report.

The token is the delivery id (6 bytes) and the first 10 bytes of an
HMAC-SHA256 of it under the ``verp`` subkey (:func:`app.keys.subkey`), in
lower-case base32 without padding: 26 letters and digits that survive a mail
system folding the case of the address (as WriteToThem's do). It names no
supporter, is the same on every retry of one letter and differs for every
other, and cannot be made for a letter without the key.
"""

import binascii
import hashlib
import hmac
from base64 import b32decode, b32encode

from .keys import subkey

#: The subkey's purpose (app/keys.py).
PURPOSE = "verp"
_ID_BYTES = 6
_MAC_BYTES = 10
#: Length of a token: base32 of 16 bytes, without its padding.
TOKEN_LENGTH = 26


def _mac(id_bytes: bytes) -> bytes:
    return hmac.new(subkey(PURPOSE), id_bytes, hashlib.sha256).digest()[:_MAC_BYTES]


def token(delivery_id: int) -> str:
    """The VERP token of delivery ``delivery_id`` (needs an app context): always the same for the same id and key."""
    id_bytes = delivery_id.to_bytes(_ID_BYTES, "big")
    return b32encode(id_bytes + _mac(id_bytes)).decode("ascii").rstrip("=").lower()


def return_path(delivery_id: int, bounce_address: str) -> str:
    """The envelope sender for delivery ``delivery_id``: ``bounce_address`` with ``+<token>`` added to its local part.

    Raises ValueError when ``bounce_address`` has no ``@``.
    """
    local, at, domain = bounce_address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"BOUNCE_ADDRESS must be an address like bounces@union.org, not {bounce_address!r}")
    return f"{local}+{token(delivery_id)}@{domain}"


def delivery_id_from(address_or_local_part: str, bounce_address: str) -> int | None:
    """The delivery id whose :func:`return_path` ``address_or_local_part`` is, or None.

    Takes an address (``bounces+…@union.org``, with or without angle brackets)
    or its local part alone, in any case. None for anything else: another
    address, a token of the wrong length or alphabet, or one whose MAC does not
    match (compared with :func:`hmac.compare_digest`). The domain is not
    checked: a forwarding alias may rewrite it, and the MAC is what counts.
    """
    if not isinstance(address_or_local_part, str) or len(address_or_local_part) > 320:
        return None
    local = address_or_local_part.strip().strip("<>").rpartition("@")[0] or address_or_local_part.strip()
    prefix = bounce_address.rpartition("@")[0].lower() + "+"
    if not local.lower().startswith(prefix):
        return None
    tail = local[len(prefix):]
    if len(tail) != TOKEN_LENGTH:
        return None
    try:
        raw = b32decode(tail.upper() + "=" * (-len(tail) % 8))
    except (binascii.Error, ValueError):
        return None
    id_bytes, mac = raw[:_ID_BYTES], raw[_ID_BYTES:]
    if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, _mac(id_bytes)):
        return None
    return int.from_bytes(id_bytes, "big")
