"""Absolute links: built from ``BASE_URL``, never from the request's Host header.

A link in an email or an export leaves the site: if it were built from the
request, anyone could sign with ``Host: evil.test`` and have the union's own
confirmation email point a supporter at their server, valid token and all.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import current_app, has_request_context, url_for

from .tokens import make_token

if TYPE_CHECKING:
    from .models import Signature


def external_url(endpoint: str, **values: Any) -> str:
    """The absolute URL of ``endpoint`` on the site's public address (``BASE_URL``).

    Works outside a request (the CLI). Without ``BASE_URL`` (allowed only when
    nothing mails a link, see :func:`app._finish_config`) a page being served
    uses its own address, which ``TRUSTED_HOSTS`` has checked.
    """
    base = current_app.config.get("BASE_URL")
    if not base:
        if has_request_context():
            return url_for(endpoint, **values, _external=True)
        raise RuntimeError("BASE_URL is not set: an absolute link cannot be made outside a request")
    parts = urlsplit(base)
    adapter = current_app.url_map.bind(parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme)
    return adapter.build(endpoint, values, force_external=True)


def unsubscribe_url(signature: "Signature") -> str:
    """The public link that withdraws ``signature``'s consent (page, or RFC 8058 one-click POST)."""
    return external_url("public.unsubscribe", lang=signature.language, token=make_token(signature, "unsubscribe"))


def confirm_url(signature: "Signature") -> str:
    """The link in the confirmation email: a page with the button that confirms ``signature``."""
    return external_url("public.confirm", lang=signature.language, token=make_token(signature, "confirm"))


def status_url(signature: "Signature", lang: str | None = None) -> str:
    """The link to ``signature``'s own page: its letter and where it is, per target."""
    return external_url("public.letter_status", lang=lang or signature.language, token=make_token(signature, "status"))


def trusted_hosts(config: Mapping[str, Any]) -> list[str]:
    """``TRUSTED_HOSTS`` when configured, else ``BASE_URL``'s host plus 127.0.0.1 and localhost."""
    if config.get("TRUSTED_HOSTS"):
        return list(config["TRUSTED_HOSTS"])
    hosts = ["127.0.0.1", "localhost"]
    if config.get("BASE_URL"):
        hosts.insert(0, urlsplit(config["BASE_URL"]).hostname)
    return hosts

