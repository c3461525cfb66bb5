"""Delivery backend ``mailgun``: sends each letter through Mailgun's HTTP API.

Settings: MAILGUN_DOMAIN, MAILGUN_API_KEY, MAILGUN_REGION (us | eu) or
MAILGUN_BASE_URL, MAILGUN_TIMEOUT. One ``POST {base}/{domain}/messages.mime``
per letter, over one HTTP session per batch: the letter goes as the MIME bytes
Clamor wrote itself (:meth:`app.delivery.Letter.as_bytes`), so no name or
subject is ever handed to Mailgun's own parser to decode. No supporter data
goes into ``o:``/``v:`` options: Mailgun can show those to recipients. The one
``v:`` variable, ``v:clamor-letter``, is the delivery id sealed with this
plugin's subkey (:func:`app.hooks.letter_variable`): Mailgun's events carry it
back to ``POST /hooks/mailgun``, which is on when MAILGUN_WEBHOOK_SIGNING_KEY
(the webhook signing key of Mailgun's control panel) is set.
"""

from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from app import (
    ConfigError,
    DeliveryBackend,
    Letter,
    PermanentFailure,
    Receipt,
    TemporaryFailure,
    addr_spec,
    hookimpl,
    letter_variable,
    utcnow,
)

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
                # app.hooks.VARIABLE: what POST /hooks/mailgun finds the letter by.
                "v:clamor-letter": letter_variable(letter.delivery_id)}
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
