"""Response headers and the keyed hash of client addresses.

Supporters of a campaign like this may be in danger: pages load nothing from
another origin, send no Referer, and the client address is never stored or
logged raw: rate limits and signatures carry :func:`client_key` instead.
"""

import hashlib
import hmac
import logging
import re

from flask import request

from .keys import subkey

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def client_hash(secret_key, address):
    """HMAC-SHA256 of a client address (or any identifier), keyed by ``secret_key``: linkable, not reversible."""
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(key, (address or "").encode(), hashlib.sha256).hexdigest()


def client_key():
    """The keyed hash of this request's client address: what every rate limit counts and a signature stores.

    The address is the one the WSGI server saw, or the forwarded one when
    PROXY_FIX_X_FOR trusts a proxy. Flask-Limiter puts its key into storage
    keys (memory, Redis) and into its "exceeded" log lines, so it must never be
    the address itself.
    """
    return client_hash(subkey("client-address"), request.remote_addr)


#: An email address, with or without angle brackets, as SMTP servers quote it
#: (``<anna@example.org>``, ``'anna@example.org'`` in smtplib's reprs), a
#: quoted local part and a domain literal included. The local part may hold
#: backslashes: ``b'\\xd0\\x9f@…'`` (a bytes repr) is one address.
_ADDRESS = re.compile(
    r"""<?(?:"[^"\n]*"|[^\s<>()\[\],;:"'@]+)@(?:\[[^\]\s]*\]|[^\s<>()\[\],;:"'@]+)>?"""
)


def redact_addresses(text):
    """``text`` with every email address in it replaced by ``<supporter>``.

    For errors of mail sent to a supporter's own mailbox, which quote that
    address; they are logged and shown to organisers, who need the reason,
    not the address.
    """
    return _ADDRESS.sub("<supporter>", text or "")


#: The client address at the start of a Werkzeug request log line
#: (``203.0.113.7 - - [date] "GET / HTTP/1.1" 200 -``).
_REQUEST_LOG_ADDRESS = re.compile(r"^\S+(?= - - \[)")


#: The token of a supporter's link (letter, confirm, unsubscribe) in a request line.
_LINK_TOKEN = re.compile(r"(/(?:letter|confirm|unsubscribe)/)[^/\s?]+")


class DropClientAddress(logging.Filter):
    """A filter for the ``werkzeug`` logger: its request lines name no client address and no link token.

    The development server (``clamor run``, ``make run``) logs every request
    as ``<address> - - [date] "GET …"``, the address being the forwarded one
    behind a trusted proxy. The line keeps its shape, with ``-`` for the address.
    """

    def filter(self, record):
        if isinstance(record.msg, str):
            record.msg = _REQUEST_LOG_ADDRESS.sub("-", record.msg, count=1)
        if record.args and isinstance(record.args, tuple) and isinstance(record.args[0], str):
            # The request line: a link's token opens a supporter's letter, so
            # it stays out of the log like the address.
            record.args = (_LINK_TOKEN.sub(r"\1…", record.args[0]), *record.args[1:])
        return True


def quiet_request_log():
    """Install :class:`DropClientAddress` on the ``werkzeug`` logger, once per process."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, DropClientAddress) for f in logger.filters):
        logger.addFilter(DropClientAddress())


def add_security_headers(response):
    """after_request: the headers every Clamor response carries."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Permissions-Policy", "interest-cohort=(), browsing-topics=()")
    return response
