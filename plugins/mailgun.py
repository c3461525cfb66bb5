"""Delivery backend ``mailgun``: sends each letter through Mailgun's HTTP API.

Settings: MAILGUN_DOMAIN, MAILGUN_API_KEY, MAILGUN_REGION (us | eu) or
MAILGUN_BASE_URL, MAILGUN_TIMEOUT. One ``POST {base}/{domain}/messages.mime``
per letter, over one HTTP session per batch: the letter goes as the MIME bytes
Clamor wrote itself (:meth:`app.delivery.Letter.as_bytes`), so no name or
subject is ever handed to Mailgun's own parser to decode. No supporter data
goes into ``o:``/``v:`` options: Mailgun can show those to recipients. The one
``v:`` variable, ``v:clamor-letter``, is the delivery id sealed
(:func:`app.letter_variable`): Mailgun's events carry it back.

``POST /hooks/mailgun`` takes those events, and is off (404) until
MAILGUN_WEBHOOK_SIGNING_KEY (the webhook signing key of Mailgun's control
panel) is set. Mailgun signs ``timestamp + token`` with that key, in the
JSON body (documentation.mailgun.com, "Securing Webhooks"); the signature
does not cover ``event-data``, so the one-time token is what stops a replay:
it is spent in the transaction of the event's effect
(:func:`app.record_provider_report`), and a timestamp further than
:data:`WINDOW` from now is refused, so a token need only be remembered that
long. Answers: 200 for an event handled, ignored, or about no letter of
ours; 406 (which Mailgun does not retry) for a bad, stale or replayed
signature and for a body that is not Mailgun's JSON, changing nothing. The
route is this plugin's own (``register_blueprints``), on the same public
path any plugin may take.
"""

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from flask import Blueprint, abort, current_app, request

from app import (
    ConfigError,
    DeliveryBackend,
    Letter,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
    addr_spec,
    csrf_exempt,
    find_sent_letter,
    hookimpl,
    letter_variable,
    rate_limit,
    record_provider_report,
    token_spent,
    utcnow,
)

log = logging.getLogger(__name__)

#: This plugin's settings and their defaults (``register_settings``): the
#: sending domain and its API key; the region (us | eu) picks the API host
#: unless MAILGUN_BASE_URL is set.
SETTINGS = {
    "MAILGUN_DOMAIN": None,
    "MAILGUN_API_KEY": None,
    "MAILGUN_REGION": "us",
    "MAILGUN_BASE_URL": None,
    "MAILGUN_TIMEOUT": 30,
    # Mailgun's "HTTP webhook signing key"; None: POST /hooks/mailgun answers 404.
    "MAILGUN_WEBHOOK_SIGNING_KEY": None,
}

#: The ``v:`` variable (``user-variables`` in an event) that names the letter.
VARIABLE = "clamor-letter"
#: How far a webhook signature's timestamp may be from now, either way, in seconds.
WINDOW = 600
#: Per client address (Mailgun posts from many): generous, since Mailgun
#: retries what is refused with 429.
RATE_LIMIT = "600 per minute"

REGIONS = {"us": "https://api.mailgun.net/v3", "eu": "https://api.eu.mailgun.net/v3"}

#: A 404 (unknown domain) may be a domain still being set up: retried this many
#: tries, then permanent.
NOT_FOUND_ATTEMPTS = 3


class MailgunBackend(DeliveryBackend):
    name = "mailgun"
    verbose_name = "Mailgun (HTTP API)"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.domain = config["MAILGUN_DOMAIN"]
        self.api_key = config["MAILGUN_API_KEY"]
        region = config["MAILGUN_REGION"]
        base = config["MAILGUN_BASE_URL"] or REGIONS.get(region)
        if not (self.domain and self.api_key):
            raise ConfigError("the mailgun backend needs MAILGUN_DOMAIN and MAILGUN_API_KEY")
        if base is None:
            raise ConfigError(f"MAILGUN_REGION must be us or eu, not {region!r} (or set MAILGUN_BASE_URL)")
        self.url = f"{base.rstrip('/')}/{self.domain}/messages.mime"
        self.domain_url = f"{base.rstrip('/')}/domains/{self.domain}"
        self.timeout = float(config["MAILGUN_TIMEOUT"])
        # Imported here, not at the top: the web workers load every plugin,
        # and requests (with urllib3) is ~5 MB a worker sends nothing with.
        import requests

        #: The ``requests`` module, for its exceptions.
        self.requests = requests
        self.session = requests.Session()
        self.session.auth = ("api", self.api_key)

    def send(self, letter: Letter) -> Receipt:
        """POST the letter's bytes; 200 returns Mailgun's id.

        429, 420, 5xx, 404 (for the first tries) and network errors or timeouts
        raise :class:`TemporaryFailure` (with ``Retry-After`` when given); any
        other 4xx raises :class:`PermanentFailure` with Mailgun's ``message``.
        """
        # The envelope recipient; the headers are in the message itself.
        data = {"to": addr_spec(letter.to_address), "o:tag": letter.campaign,
                # What POST /hooks/mailgun finds the letter by.
                f"v:{VARIABLE}": letter_variable(letter.delivery_id)}
        files = [("message", ("letter.eml", letter.as_bytes(), "message/rfc822"))]
        try:
            response = self.session.post(self.url, data=data, files=files, timeout=self.timeout)
        except self.requests.RequestException as exc:
            raise TemporaryFailure(f"Mailgun {self.url}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        reason = f"Mailgun answered {status}: {_message(response)}"
        if status == 200:
            return Receipt(provider_id=_json(response).get("id", ""))
        if status in (420, 429) or status >= 500:
            raise TemporaryFailure(reason, retry_after=_retry_after(response))
        if status == 404 and letter.attempt < NOT_FOUND_ATTEMPTS:
            raise TemporaryFailure(reason)
        raise PermanentFailure(reason)

    def check(self) -> str | None:
        """GET the domain from Mailgun with the API key: it must exist for this key and be active. Sends nothing."""
        try:
            response = self.session.get(self.domain_url, timeout=self.timeout)
        except self.requests.RequestException as exc:
            raise TemporaryFailure(f"Mailgun {self.domain_url}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 401:
            raise PermanentFailure(f"Mailgun refused the API key (401) at {self.domain_url}: check MAILGUN_API_KEY, "
                                   "and MAILGUN_REGION (a domain in the EU needs eu)")
        if status == 404:
            raise PermanentFailure(f"Mailgun has no domain {self.domain} for this key (404): check MAILGUN_DOMAIN "
                                   "and MAILGUN_REGION")
        if status != 200:
            raise TemporaryFailure(f"Mailgun answered {status}: {_message(response)}")
        state = (_json(response).get("domain") or {}).get("state") or ""
        if state and state != "active":
            raise PermanentFailure(f"Mailgun says the domain {self.domain} is {state}: finish its DNS set-up in "
                                   "Mailgun's control panel")
        return f"Mailgun knows the domain {self.domain}" + (f" ({state})" if state else "")

    def close(self) -> None:
        self.session.close()


def _json(response):
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response):
    return _json(response).get("message") or response.text[:300] or response.reason


def _retry_after(response):
    """Seconds from a Retry-After header (seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when.replace(tzinfo=None) - utcnow()).total_seconds(), 0)


@hookimpl
def register_settings() -> dict[str, Any]:
    return SETTINGS


@hookimpl
def register_delivery_backends() -> list[type[DeliveryBackend]]:
    return [MailgunBackend]


@hookimpl
def register_blueprints() -> list[Blueprint]:
    return [webhook]


# Mailgun's events --------------------------------------------------------

webhook = Blueprint("mailgun", __name__, url_prefix="/hooks")
# Mailgun proves itself with its own signature: there is no form, no CSRF token.
csrf_exempt(webhook)


class Refused(ValueError):
    """A request that is not a genuine, fresh Mailgun event: answered 406."""


def verify(body: object, key: str, now: float | None = None) -> str:
    """Check ``body``'s Mailgun signature with ``key``; return the one-time token to spend. Raises :class:`Refused`."""
    signature = body.get("signature") if isinstance(body, dict) else None
    if not isinstance(signature, dict):
        raise Refused("no signature")
    timestamp, token, digest = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in (timestamp, token, digest)):
        raise Refused("an incomplete signature")
    key = key if isinstance(key, bytes) else str(key).encode()
    expected = hmac.new(key, f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    # Bytes: compare_digest refuses a str with non-ASCII characters (a 500).
    if not hmac.compare_digest(expected.encode(), str(digest).encode()):
        raise Refused("a bad signature")
    try:
        age = (now or time.time()) - int(timestamp)
    except ValueError:
        raise Refused("a timestamp that is no number") from None
    if abs(age) > WINDOW:
        raise Refused(f"a timestamp {age:.0f}s from now")
    nonce = "mailgun:" + hashlib.sha256(str(token).encode()).hexdigest()[:56]
    if token_spent(nonce):
        raise Refused("a replayed token")
    return nonce


def _event_letter(event):
    """The letter ``event`` (Mailgun's ``event-data``) is about: by ``v:clamor-letter``, else by message id."""
    variables = event.get("user-variables")
    message = event.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    return find_sent_letter(variable=variables.get(VARIABLE) if isinstance(variables, dict) else None,
                            provider_id=headers.get("message-id") if isinstance(headers, dict) else None)


def report_kind(event: Mapping[str, Any]) -> str | None:
    """What Clamor records for ``event``: delivered; failed, permanent → bounced; failed → a problem; complained."""
    kind = event.get("event")
    if kind == "delivered":
        return "delivered"
    if kind == "failed":
        return "bounced" if event.get("severity") == "permanent" else "problem"
    return "complaint" if kind == "complained" else None


def _report(event):
    """The text of Mailgun's report: its delivery-status message (or description, or reason)."""
    status = event.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    text = status.get("message") or status.get("description") or event.get("reason") or ""
    code = status.get("code")
    return f"Mailgun {event.get('event')}: {f'{code} ' if code else ''}{text}".strip()


@webhook.post("/mailgun")
@rate_limit(RATE_LIMIT)
def events() -> tuple[str, int]:
    """Take one Mailgun event (see the module's docstring for the answers)."""
    key = current_app.config.get("MAILGUN_WEBHOOK_SIGNING_KEY")
    if not key:
        abort(404)
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # JSON nested deeper than Python's parser goes: not Mailgun's.
        body = None
    try:
        nonce = verify(body, key)
        event = body.get("event-data")
        if not isinstance(event, dict):
            raise Refused("no event-data")
    except Refused as refused:
        log.warning("a Mailgun webhook refused: %s", refused)
        return "refused", 406
    if not record_provider_report(_event_letter(event), report_kind(event), _report(event),
                                  token=nonce, token_seconds=2 * WINDOW):
        return "refused", 406
    return "ok", 200
