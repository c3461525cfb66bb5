"""Delivery backend ``smtp``: sends each letter through an SMTP server.

Settings: SMTP_HOST, SMTP_PORT, SMTP_SECURITY (none | starttls | ssl),
SMTP_USERNAME, SMTP_PASSWORD, SMTP_TIMEOUT. TLS verifies the server's
certificate with the system's trust store. One connection serves a whole batch.
When the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go in one
write: two round trips a letter instead of four.
"""

import re
import smtplib
import ssl
from collections.abc import Mapping
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
)

#: This plugin's settings and their defaults (``register_settings``).
SETTINGS = {
    "SMTP_HOST": "localhost",
    "SMTP_PORT": 25,
    #: none | starttls | ssl. TLS always verifies the server's certificate.
    "SMTP_SECURITY": "none",
    "SMTP_USERNAME": None,
    "SMTP_PASSWORD": None,
    "SMTP_TIMEOUT": 30,
}


class SMTPBackend(DeliveryBackend):
    name = "smtp"
    verbose_name = "SMTP server"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.host = config["SMTP_HOST"]
        self.port = int(config["SMTP_PORT"])
        self.security = config["SMTP_SECURITY"]
        if self.security not in ("none", "starttls", "ssl"):
            raise ConfigError(f"SMTP_SECURITY must be none, starttls or ssl, not {self.security!r}")
        self.username = config["SMTP_USERNAME"]
        self.password = config["SMTP_PASSWORD"]
        self.timeout = float(config["SMTP_TIMEOUT"])
        self._connection: smtplib.SMTP | None = None
        self._tls_context: ssl.SSLContext | None = None

    def _context(self):
        # Made once per backend: loading the trust store takes ~50 ms, which
        # would be paid again for every letter while the server is down.
        if self._tls_context is None:
            self._tls_context = ssl.create_default_context()
        return self._tls_context

    def _connect(self):
        if self.security == "ssl":
            connection = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context())
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.security == "starttls":
                connection.starttls(context=self._context())
            if self.username:
                connection.login(self.username, self.password or "")
        except BaseException:
            connection.close()
            raise
        return connection

    def send(self, letter: Letter) -> Receipt:
        """Send over the batch's connection, opening it on first use.

        The message is :meth:`Letter.as_bytes`, sent as it is; the envelope
        addresses are the letter's (``return_path`` or else ``from_address``,
        and ``to_address``), in ASCII (an IDN domain in punycode).
        4xx replies, a dropped connection (as if 451) and timeouts raise
        :class:`TemporaryFailure`; a 5xx reply raises :class:`PermanentFailure`.
        The connection is dropped after a 421 or a network error, so the next
        letter opens a new one; other refusals leave it usable (after an RSET).
        """
        try:
            if self._connection is None:
                # Connect before building the message: while the server is
                # down, each letter of a batch costs one refused connection.
                self._connection = self._connect()
            data = letter.as_bytes()
            # The envelope sender is where bounces go: the letter's VERP
            # address when there is one (BOUNCE_ADDRESS); From stays as it is.
            send_mail(self._connection, letter.return_path or letter.from_address, letter.to_address, data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise self._classify(code, reply) from exc
        except smtplib.SMTPResponseException as exc:
            raise self._classify(exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            reason = "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
            raise TemporaryFailure(f"SMTP {self.host}:{self.port}: {reason} (treated as 451)") from exc
        return Receipt(provider_id=letter.message_id)

    def _classify(self, code, reply):
        if code == 421 or code < 400:
            # 421: the server is closing the channel; smtplib has closed its
            # socket already, so forget the connection and reconnect next time.
            self.close()
        text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        reason = f"SMTP {self.host}:{self.port} answered {code} {text}"
        return PermanentFailure(reason) if 500 <= code < 600 else TemporaryFailure(reason)

    def check(self) -> str | None:
        """Connect, EHLO, STARTTLS or SSL as SMTP_SECURITY says, log in if SMTP_USERNAME is set, QUIT: no mail."""
        where = f"SMTP {self.host}:{self.port}"
        try:
            connection = self._connect()
            try:
                connection.ehlo_or_helo_if_needed()
            finally:
                connection.quit()
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentFailure(f"{where} refused the login of {self.username!r} ({exc.smtp_code}): "
                                   "check SMTP_USERNAME and SMTP_PASSWORD") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentFailure(f"{where}: {exc}: check SMTP_SECURITY and SMTP_USERNAME") from exc
        except (smtplib.SMTPException, OSError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
            raise TemporaryFailure(f"{where}: {reason}: check SMTP_HOST, SMTP_PORT and SMTP_SECURITY") from exc
        steps = ["EHLO", *{"starttls": ["STARTTLS"], "ssl": ["SSL"]}.get(self.security, [])]
        if self.username:
            steps.append(f"AUTH as {self.username}")
        return f"{self.host}:{self.port} answered {', '.join(steps)}"

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (smtplib.SMTPException, OSError):
                self._connection.close()
            self._connection = None


def send_mail(connection: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> None:
    """Send ``data`` from ``sender`` to ``recipient``, raising what ``connection.sendmail`` would raise.

    Both addresses go through :func:`app.addr_spec` first (ASCII, an IDN domain
    in punycode; anything else raises its ValueError), so each stays one
    argument of one command.
    When the server offers PIPELINING, MAIL FROM, RCPT TO and DATA are sent
    together and their three replies read after: on a fast relay the
    round trips, not the bytes, are what a letter costs. After a refusal the
    transaction is reset (or the connection closed, after a 421), as
    sendmail does, so the connection stays usable for the next letter.
    """
    sender, recipient = addr_spec(sender), addr_spec(recipient)
    connection.ehlo_or_helo_if_needed()
    if not connection.has_extn("pipelining"):
        connection.sendmail(sender, [recipient], data)
        return
    size = f" SIZE={len(data)}" if connection.has_extn("size") else ""
    connection.send(f"MAIL FROM:<{sender}>{size}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode("ascii"))
    mail = connection.getreply()
    if mail[0] == 421:  # the server is leaving: no more replies come
        connection.close()
        raise smtplib.SMTPSenderRefused(*mail, sender)
    rcpt = connection.getreply()
    if rcpt[0] == 421:
        connection.close()
        raise smtplib.SMTPRecipientsRefused({recipient: rcpt})
    start = connection.getreply()
    if start[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
        # A server that took DATA although it refused the envelope gets an empty message, ended at once.
        connection.send(b".\r\n")
        connection.getreply()
    if mail[0] != 250:
        _end_transaction(connection, mail[0])
        raise smtplib.SMTPSenderRefused(*mail, sender)
    if rcpt[0] not in (250, 251):
        _end_transaction(connection, rcpt[0])
        raise smtplib.SMTPRecipientsRefused({recipient: rcpt})
    if start[0] != 354:
        _end_transaction(connection, start[0])
        raise smtplib.SMTPDataError(*start)
    # As smtplib's data(): CRLF line ends, a leading dot doubled, then the lone dot.
    body = _LEADING_DOT.sub(b"..", _LINE_END.sub(b"\r\n", data))
    connection.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    code, reply = connection.getreply()
    if code != 250:
        _end_transaction(connection, code)
        raise smtplib.SMTPDataError(code, reply)


_LINE_END = re.compile(rb"\r\n|\n|\r")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def _end_transaction(connection, code):
    """After a refusal: close the connection on 421 (the server is leaving), else RSET."""
    if code == 421:
        connection.close()
        return
    try:
        connection.rset()
    except smtplib.SMTPServerDisconnected:
        pass  # the next letter reconnects


@hookimpl
def register_settings() -> dict[str, Any]:
    return SETTINGS


@hookimpl
def register_delivery_backends() -> list[type[DeliveryBackend]]:
    return [SMTPBackend]
