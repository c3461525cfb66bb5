"""The bounce mailbox over IMAP: ``clamor bounces fetch``, and ``clamor deliver`` every BOUNCE_POLL_SECONDS.

``BOUNCE_IMAP_URL = "imaps://user:pass@host[:port]/INBOX"``: IMAP over TLS
with the certificate verified and the host name checked
(:func:`ssl.create_default_context`, which honours ``SSL_CERT_FILE``).
``imap://`` is for a server on the same machine, and uses STARTTLS when the
server offers it. User and password are percent-decoded. The password is
never part of an error, a log line or an exception raised here.

Each message in the folder is handled by :func:`app.bounces.handle`, then
moved (MOVE, or COPY + ``\\Deleted`` + EXPUNGE) to BOUNCE_IMAP_DONE_FOLDER,
or to BOUNCE_IMAP_UNMATCHED_FOLDER when it matches no letter; both are made
when missing. A message leaves the folder only after what it said was
committed, so none is lost; two pollers that fetch the same message at once
record it once (:func:`app.states.bounced` is one conditional UPDATE).
"""

import imaplib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Flask

from . import bounces

log = logging.getLogger(__name__)

#: Seconds to wait for the IMAP server at each step.
TIMEOUT = 30


class MailboxError(Exception):
    """The bounce mailbox cannot be read: a one-line reason, never with the password."""


@dataclass(frozen=True)
class MailboxAddress:
    """BOUNCE_IMAP_URL taken apart."""

    tls: bool
    host: str
    port: int
    user: str
    password: str
    folder: str

    def __repr__(self) -> str:
        return f"MailboxAddress({'imaps' if self.tls else 'imap'}://{self.user}@{self.host}:{self.port}/{self.folder})"


def parse_url(url: str) -> MailboxAddress:
    """Take ``url`` apart; raises :class:`MailboxError` (without the password) when it is not an IMAP URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except (ValueError, TypeError, AttributeError):
        raise MailboxError("BOUNCE_IMAP_URL is not a URL like imaps://user:password@host/INBOX") from None
    if parts.scheme not in ("imap", "imaps") or not parts.hostname or parts.username is None:
        raise MailboxError("BOUNCE_IMAP_URL must look like imaps://user:password@host/INBOX (or imap:// on this host)")
    tls = parts.scheme == "imaps"
    return MailboxAddress(tls=tls, host=parts.hostname, port=port or (993 if tls else 143),
                          user=unquote(parts.username), password=unquote(parts.password or ""),
                          folder=unquote(parts.path.lstrip("/")) or "INBOX")


def _quoted(name):
    """A mailbox name as an IMAP quoted string (imaplib sends arguments as they are)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reason(exc):
    """One line about ``exc``: IMAP's own words (never the password: it is not in them), or the error's kind."""
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    elif isinstance(exc, OSError):
        # An OSError's first argument is its errno; its str says what happened (a certificate not trusted …).
        text = str(exc)
    return " ".join(text.split())[:300] or type(exc).__name__


def connect(address: MailboxAddress) -> imaplib.IMAP4:
    """A logged-in connection to ``address`` with its folder selected; raises :class:`MailboxError`."""
    where = f"{address.host}:{address.port}"
    context = ssl.create_default_context()
    try:
        if address.tls:
            imap = imaplib.IMAP4_SSL(address.host, address.port, ssl_context=context, timeout=TIMEOUT)
        else:
            imap = imaplib.IMAP4(address.host, address.port, timeout=TIMEOUT)
            if "STARTTLS" in imap.capabilities:
                imap.starttls(ssl_context=context)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"the bounce mailbox {where} cannot be reached: {_reason(exc)}") from None
    try:
        imap.login(address.user, address.password)
    except (OSError, imaplib.IMAP4.error) as exc:
        _close(imap)
        raise MailboxError(f"the bounce mailbox {where} refused the login of {address.user}: {_reason(exc)}") from None
    try:
        # Capabilities change at login (Dovecot adds MOVE and UIDPLUS); imaplib keeps the greeting's.
        status, data = imap.capability()
        if status == "OK" and data and data[-1]:
            imap.capabilities = tuple(data[-1].decode(errors="replace").upper().split())
    except (OSError, imaplib.IMAP4.error):
        pass
    try:
        status, detail = imap.select(_quoted(address.folder))
    except (OSError, imaplib.IMAP4.error) as exc:
        status, detail = "NO", [str(_reason(exc)).encode()]
    if status != "OK":
        _close(imap)
        reason = _reason(Exception(*detail))
        raise MailboxError(f"the bounce mailbox {where} has no folder {address.folder!r}: {reason}")
    return imap


def _close(imap):
    try:
        imap.logout()
    except (OSError, imaplib.IMAP4.error):
        pass


def login_check(url: str) -> str | None:
    """None when ``url`` (BOUNCE_IMAP_URL) logs in and its folder opens; else a one-line reason without the password.

    For ``clamor doctor``.
    """
    try:
        _close(connect(parse_url(url)))
    except MailboxError as exc:
        return str(exc)
    return None


def _ensure_folder(imap, name):
    status, listed = imap.list('""', _quoted(name))
    if status == "OK" and any(item for item in listed if item):
        return
    status, detail = imap.create(_quoted(name))
    if status != "OK":
        raise MailboxError(f"the bounce mailbox cannot make the folder {name!r}: {_reason(Exception(*detail))}")


def _move(imap, uid, folder):
    if "MOVE" in imap.capabilities:
        status, detail = imap.uid("MOVE", uid, _quoted(folder))
    else:
        status, detail = imap.uid("COPY", uid, _quoted(folder))
        if status == "OK":
            imap.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
            # UID EXPUNGE (UIDPLUS) removes only this message, not others someone marked deleted.
            if "UIDPLUS" in imap.capabilities:
                imap.uid("EXPUNGE", uid)
            else:
                imap.expunge()
    if status != "OK":
        raise MailboxError(f"the bounce mailbox cannot move a message to {folder!r}: {_reason(Exception(*detail))}")


def _message(imap, uid):
    status, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
    if status != "OK":
        return None
    return next((item[1] for item in data if isinstance(item, tuple) and len(item) > 1), None)


def fetch(config: Mapping[str, Any]) -> Counter[str]:
    """Handle every message in the mailbox of ``config["BOUNCE_IMAP_URL"]`` once; count them by what was done.

    The counts' keys are :attr:`app.bounces.Handled.action` values. Needs an
    app context. Raises :class:`MailboxError` when the mailbox cannot be read;
    what was handled before that stays handled.
    """
    address = parse_url(config["BOUNCE_IMAP_URL"])
    done, unmatched = config["BOUNCE_IMAP_DONE_FOLDER"], config["BOUNCE_IMAP_UNMATCHED_FOLDER"]
    imap = connect(address)
    counts: Counter[str] = Counter()
    try:
        for folder in (done, unmatched):
            _ensure_folder(imap, folder)
        status, data = imap.uid("SEARCH", None, "ALL")
        uids = data[0].split() if status == "OK" and data and data[0] else []
        for uid in uids:
            raw = _message(imap, uid)
            if raw is None:
                continue
            handled = bounces.handle(raw)
            _move(imap, uid, unmatched if handled.action == "unmatched" else done)
            counts[handled.action] += 1
    except (OSError, imaplib.IMAP4.error) as exc:
        raise MailboxError(f"reading the bounce mailbox {address.host} failed: {_reason(exc)}") from None
    finally:
        _close(imap)
    return counts


def fetch_when_due(app: Flask, due_at: float) -> float:
    """For the delivery loop: fetch the bounce mailbox if BOUNCE_IMAP_URL is set and ``due_at`` (monotonic) passed.

    Returns when the next fetch is due. A fetch that fails logs one line and
    stops nothing: delivery goes on, and the next try is a poll later.
    """
    url = app.config.get("BOUNCE_IMAP_URL")
    now = time.monotonic()
    if not url or now < due_at:
        return due_at
    try:
        with app.app_context():
            counts = fetch(app.config)
        if counts:
            log.info("bounce mailbox: %s", ", ".join(f"{n} {action}" for action, n in sorted(counts.items())))
    except Exception as exc:
        log.warning("bounce mailbox: fetch failed, delivery goes on: %s",
                    str(exc) if isinstance(exc, MailboxError) else type(exc).__name__)
    return now + float(app.config["BOUNCE_POLL_SECONDS"])
