"""Response headers and the keyed hash of client addresses.

Supporters of a campaign like this may be in danger: pages load nothing from
another origin, send no Referer, and the client address is never stored raw.
"""

import hashlib
import hmac

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def client_hash(secret_key, address):
    """HMAC-SHA256 of a client address (or any identifier), keyed by ``secret_key``: linkable, not reversible."""
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(key, (address or "").encode(), hashlib.sha256).hexdigest()


def add_security_headers(response):
    """after_request: the headers every Clamor response carries."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Permissions-Policy", "interest-cohort=(), browsing-topics=()")
    return response
