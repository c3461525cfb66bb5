"""The serializer behind the session cookie and the CSRF token, made cheaper without changing what it accepts.

Every first visit to a campaign page signs two values with itsdangerous: the
session cookie (which holds the raw CSRF secret) and the form's CSRF token.
Four things made each signature cost more than the HMAC itself:

- the signer derives its key from the secret and salt (one more HMAC) at
  every call; here it is derived once per secret and kept;
- the HMAC goes through ``hmac.new`` with a Python wrapper for SHA-1, its
  slow path; here it is one ``hmac.digest`` call, the same HMAC;
- ``URLSafeSerializer`` tries ``zlib.compress`` on every payload, which sets
  up a fresh compressor each time; a payload this short never gets shorter,
  so payloads under :data:`COMPRESS_FROM` bytes are not tried;
- Flask's tagged JSON walks the session for values to tag (bytes, tuples,
  dates …); a session of strings only, as every visitor's is, has none, and
  :class:`SessionJSON` writes the JSON Flask would write without the walk.

What comes out is what itsdangerous itself makes and checks: the same
key, the same HMAC, the same format (a compressed payload is marked with a
leading ``.``; these are simply never compressed), so Flask and Flask-WTF
load and verify them with their own code.
"""

import hmac
import json
from typing import Any

from flask.json.tag import TaggedJSONSerializer
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, want_bytes
from itsdangerous.signer import HMACAlgorithm

#: Payloads (JSON bytes) shorter than this go uncompressed: zlib's own framing
#: is 11 bytes, and a short token or session is all distinct characters.
COMPRESS_FROM = 200


class KeptKeySigner(TimestampSigner):
    """itsdangerous' timestamp signer, deriving each secret's key once instead of per signature."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._derived: dict[bytes, bytes] = {}
        # The name of the HMAC's hash ("sha1"), when the algorithm is itsdangerous' own HMAC.
        self._hmac_name = self.digest_method().name if type(self.algorithm) is HMACAlgorithm else None

    def get_signature(self, value: str | bytes) -> bytes:
        # The same HMAC in one call into OpenSSL: through itsdangerous' lazy
        # SHA-1 wrapper, hmac.new takes its slower pure-Python path.
        if self._hmac_name is None:
            return super().get_signature(value)
        return base64_encode(hmac.digest(self.derive_key(), want_bytes(value), self._hmac_name))

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
        # itsdangerous builds a signer per call; the key is kept inside it, so keep one signer per salt.
        self._signers: dict[Any, TimestampSigner] = {}

    def make_signer(self, salt: str | bytes | None = None) -> TimestampSigner:
        signer = self._signers.get(salt)
        if signer is None:
            signer = self._signers[salt] = super().make_signer(salt)
        return signer

    def dump_payload(self, obj: Any) -> bytes:
        payload = want_bytes(self.serializer.dumps(obj, **self.serializer_kwargs))
        if len(payload) < COMPRESS_FROM:
            return base64_encode(payload)
        return super().dump_payload(obj)


class SessionJSON(TaggedJSONSerializer):
    """Flask's session serializer; a session whose keys and values are all strings is dumped without tagging.

    The output is what Flask's own would be for such a session (compact,
    keys sorted, non-ASCII escaped, as Flask's default JSON provider
    writes); anything else, and every load, goes through Flask's code.
    """

    def dumps(self, value: Any) -> str:
        plain = type(value) is dict and all(type(k) is str and type(v) is str for k, v in value.items())
        # A one-key dict whose key is a tag (" t", " di" …) is itself tagged by Flask.
        if plain and not (len(value) == 1 and next(iter(value)) in self.tags):
            return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
        return super().dumps(value)
