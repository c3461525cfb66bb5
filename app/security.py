"""Response headers, the session cookie, the CSRF check, and the keyed hash of client addresses.

Supporters of a campaign like this may be in danger: pages load nothing from
another origin, send no Referer, and the client address is never stored or
logged raw: rate limits and signatures carry :func:`client_key` instead.
"""

import functools
import hashlib
import hmac
import logging
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from flask import Flask, Request, Response, current_app, has_request_context, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer
from werkzeug.http import dump_cookie

from .keys import subkey
from .signed_values import SessionJSON, SignedValues

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def client_hash(secret_key: str | bytes, address: str | None) -> str:
    """HMAC-SHA256 of a client address (or any identifier), keyed by ``secret_key``: linkable, not reversible."""
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(key, (address or "").encode(), hashlib.sha256).hexdigest()


def client_key() -> str:
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


def redact_addresses(text: str | None) -> str:
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

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = _REQUEST_LOG_ADDRESS.sub("-", record.msg, count=1)
        if record.args and isinstance(record.args, tuple) and isinstance(record.args[0], str):
            # The request line: a link's token opens a supporter's letter, so
            # it stays out of the log like the address.
            record.args = (_LINK_TOKEN.sub(r"\1…", record.args[0]), *record.args[1:])
        return True


def quiet_request_log() -> None:
    """Install :class:`DropClientAddress` on the ``werkzeug`` logger, once per process."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, DropClientAddress) for f in logger.filters):
        logger.addFilter(DropClientAddress())


#: The session cookie of embedded pages: its own, so that the SameSite=None
#: an iframe needs never reaches the site's own (Lax) session cookie.
EMBED_SESSION_COOKIE = "clamor_embed_session"


def check_embed_origins(origins: Sequence[str]) -> None:
    """Raise ValueError unless every entry of ``origins`` is an origin: ``https://union.org`` (no path)."""
    if not isinstance(origins, (list, tuple)):
        raise ValueError(f"EMBED_ORIGINS must be a list of origins, not {origins!r}")
    for origin in origins:
        parts = urlsplit(origin) if isinstance(origin, str) else None
        if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
                or parts.path not in ("", "/") or parts.query or parts.fragment or any(c in origin for c in " ;,'\"")):
            raise ValueError(f"EMBED_ORIGINS: {origin!r} is not an origin like https://union.org")


#: The paths of the embed routes (app/public.py), told from the path alone:
#: the session is opened before the URL is matched.
_EMBED_PATH = re.compile(r"^/[^/]+/[^/]+/embed(?:/thanks)?$")


def _embedding(app=None):
    """True while serving an embed route of a site that lists EMBED_ORIGINS."""
    # The setting first: asked three times a response, and for most sites it is empty.
    return (bool((app or current_app).config.get("EMBED_ORIGINS")) and has_request_context()
            and _EMBED_PATH.match(request.path) is not None)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session; on embed routes, its own cookie with SameSite=None; Secure.

    A browser sends a SameSite=Lax cookie to a frame only when the page around
    it is on the same site, so the CSRF token of an embedded form would never
    come back. See docs/deploying.md for what SameSite=None costs.
    """

    serializer = SessionJSON()

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        # Flask builds a new serializer (and test-encodes {} with it) twice a
        # request; the keys do not change, so one per set of keys will do. It
        # is made with Flask's arguments, of the cheaper class in app/signed_values.py.
        if not app.secret_key:
            return None
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        cached = getattr(self, "_serializer", None)
        if cached is None or cached[0] != keys:
            serializer = SignedValues(
                [*keys[1:], keys[0]],  # itsdangerous takes the current key last
                salt=self.salt, serializer=self.serializer,
                signer_kwargs={"key_derivation": self.key_derivation, "digest_method": self.digest_method},
            )
            cached = self._serializer = (keys, serializer)
        return cached[1]

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        """Flask's; a request without the cookie (a first visit) gets a new, empty session without asking for it.

        Werkzeug answers ``request.cookies.get`` of a cookie that is not there
        by building an exception (a ``BadRequestKeyError``) and catching it.
        """
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Flask's, with the header of a session cookie that lasts until the browser closes drawn directly.

        That is the cookie every first visitor of a campaign page gets (it
        holds the CSRF secret). Flask draws it with Werkzeug's ``set_cookie``
        and adds ``Vary: Cookie`` twice through ``response.vary``, which
        parses and redraws the header each time: 7% of such a page view
        (in-process, the two in turns). Here the header is the one Werkzeug draws
        for these attributes (made once per set of them), with the signed
        value in its place; a permanent session, an empty or unchanged one,
        and a cookie too large for browsers go through Flask's code.
        """
        if not session or session.permanent or not self.should_set_cookie(app, session):
            super().save_session(app, session, response)
            return
        attributes = (self.get_cookie_name(app), self.get_cookie_domain(app), self.get_cookie_path(app),
                      self.get_cookie_secure(app), self.get_cookie_partitioned(app),
                      self.get_cookie_samesite(app), self.get_cookie_httponly(app))
        value = self.get_signing_serializer(app).dumps(dict(session))
        head, tail = _cookie_header(attributes)
        header = f"{head}{value}{tail}"
        if len(header) > response.max_cookie_size:  # Flask's code warns, as Werkzeug's measure says
            super().save_session(app, session, response)
            return
        response.headers.add("Set-Cookie", header)
        vary = response.headers.get("Vary")
        if vary is None:
            response.headers["Vary"] = "Cookie"
        elif "cookie" not in (part.strip().lower() for part in vary.split(",")):
            response.vary.add("Cookie")

    def get_cookie_name(self, app: Flask) -> str:
        return EMBED_SESSION_COOKIE if _embedding(app) else super().get_cookie_name(app)

    def get_cookie_samesite(self, app: Flask) -> str | None:
        return "None" if _embedding(app) else super().get_cookie_samesite(app)

    def get_cookie_secure(self, app: Flask) -> bool:
        return True if _embedding(app) else super().get_cookie_secure(app)


@functools.lru_cache(maxsize=16)
def _cookie_header(attributes):
    """(what comes before the value, what after) in Werkzeug's Set-Cookie header for ``attributes``.

    The signed value needs no quoting: itsdangerous writes URL-safe base64
    and dots only, which Werkzeug leaves as they are.
    """
    name, domain, path, secure, partitioned, samesite, httponly = attributes
    header = dump_cookie(name, _VALUE, domain=domain, path=path, secure=secure, partitioned=partitioned,
                         samesite=samesite, httponly=httponly)
    head, _, tail = header.partition(_VALUE)
    return head, tail


_VALUE = "clamor-session-value"


def _headers(ancestors):
    return (("Content-Security-Policy",
             CONTENT_SECURITY_POLICY.replace("frame-ancestors 'none'", f"frame-ancestors {ancestors}")),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Permissions-Policy", "interest-cohort=(), browsing-topics=()"))


_EVERYWHERE = _headers("'none'") + (("X-Frame-Options", "DENY"),)


def add_security_headers(response: Response) -> Response:
    """after_request: the headers every Clamor response carries (a view may set its own first).

    Framing is refused everywhere (``frame-ancestors 'none'``, X-Frame-Options
    DENY) except on the embed routes of a site with EMBED_ORIGINS, which only
    those origins may frame.
    """
    headers = response.headers
    if _embedding():
        wanted = _headers(" ".join(o.rstrip("/") for o in current_app.config["EMBED_ORIGINS"]))
    else:
        wanted = _EVERYWHERE
    # One pass over the headers instead of one per setdefault.
    present = {name.lower() for name in headers.keys()}
    for name, value in wanted:
        if name.lower() not in present:
            headers.add(name, value)
    return response


def check_csrf() -> None:
    """Flask-WTF's CSRF check of a request (views marked ``csrf.exempt`` excepted), the method asked first.

    Flask-WTF's own hook (off: WTF_CSRF_CHECK_DEFAULT) looks the view's
    exemption up before the method, on every GET too: 3% of a page view.
    """
    from .extensions import csrf  # here: app/extensions.py imports this module (client_key)

    config = current_app.config
    if config["WTF_CSRF_ENABLED"] and request.method in config["WTF_CSRF_METHODS"]:
        csrf.protect(apply_exemptions=True)
