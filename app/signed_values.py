"""The serializer behind the session cookie and the CSRF token, made cheaper without changing what it accepts.

Every first visit to a campaign page signs two values with itsdangerous: the
session cookie (which holds the raw CSRF secret) and the form's CSRF token.
Two things made each signature cost more than the HMAC itself:

- the signer derives its key from the secret and salt (one more HMAC) at
  every call; here it is derived once per secret and kept;
- ``URLSafeSerializer`` tries ``zlib.compress`` on every payload, which sets
  up a fresh compressor each time; a payload this short never gets shorter,
  so payloads under :data:`COMPRESS_FROM` bytes are not tried.

What comes out is what itsdangerous itself makes and checks: the same
key, the same HMAC, the same format (a compressed payload is marked with a
leading ``.``; these are simply never compressed), so Flask and Flask-WTF
load and verify them with their own code.
"""

from typing import Any

from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

#: Payloads (JSON bytes) shorter than this go uncompressed: zlib's own framing
#: is 11 bytes, and a short token or session is all distinct characters.
COMPRESS_FROM = 200


class KeptKeySigner(TimestampSigner):
    """itsdangerous' timestamp signer, deriving each secret's key once instead of per signature."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._derived: dict[bytes, bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        secret = self.secret_keys[-1] if secret_key is None else secret_key
        secret = secret.encode() if isinstance(secret, str) else secret
        key = self._derived.get(secret)
        if key is None:
            key = self._derived[secret] = super().derive_key(secret)
        return key


class SignedValues(URLSafeTimedSerializer):
    """``URLSafeTimedSerializer`` with :class:`KeptKeySigner`, and short payloads left uncompressed.

    Build it once per set of keys and keep it; it loads whatever
    ``URLSafeTimedSerializer`` with the same keys and salt makes.
    """

    default_signer = KeptKeySigner

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # make_signer() builds a signer per call; with the key derived inside it, keep one per secret.
        self._signers: dict[Any, TimestampSigner] = {}

    def make_signer(self, salt: str | bytes | None = None) -> TimestampSigner:
        signer = self._signers.get(salt)
        if signer is None:
            signer = self._signers[salt] = super().make_signer(salt)
        return signer

    def dump_payload(self, obj: Any) -> bytes:
        json = self.serializer.dumps(obj, **self.serializer_kwargs)
        json = json.encode("utf-8") if isinstance(json, str) else json
        if len(json) < COMPRESS_FROM:
            return base64_encode(json)
        return super().dump_payload(obj)
