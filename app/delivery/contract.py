"""The plugin contract: what a delivery backend is given and what it answers.

A backend subclasses :class:`DeliveryBackend`; it is handed finished
:class:`Letter` objects and returns a :class:`Receipt`, or raises
:class:`TemporaryFailure` (try again later) or :class:`PermanentFailure`
(never). Plugins import these names from ``app``.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from typing import Any, ClassVar

from flask_babel.speaklater import LazyString

from .. import mailbytes
from ..models import utcnow


class TemporaryFailure(Exception):
    """The letter could not be sent now; try again later.

    ``retry_after``: seconds the provider asked us to wait, or None.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after: float | None = retry_after


class PermanentFailure(Exception):
    """The letter can never be sent as it is (a refused recipient, bad credentials)."""


@dataclass(frozen=True)
class Receipt:
    """What a backend returns when it accepted a letter."""

    #: The provider's id for the message (Mailgun's id, the SMTP queue reply …).
    provider_id: str = ""
    accepted_at: datetime = field(default_factory=utcnow)
    #: A note for organisers, e.g. "queued for faxing"; stored in
    #: ``Delivery.note``, never in ``last_error`` (it is not an error).
    note: str = ""


@dataclass(frozen=True)
class Letter:
    """One finished letter to one target: plain strings only, already translated."""

    delivery_id: int
    campaign: str
    language: str
    channel: str
    from_name: str
    from_address: str
    reply_to_name: str
    reply_to_address: str
    to_name: str
    #: The target's email address, or its fax number for the fax channel.
    to_address: str
    subject: str
    body: str
    message_id: str
    date: datetime
    #: Which try this is (1 for the first); lets a backend give up on an
    #: error that is temporary only a few times (Mailgun's 404).
    attempt: int = 1
    #: ``(filename, MIME type, bytes)`` triples, e.g. the PDF a fax gateway faxes.
    attachments: tuple[tuple[str, str, bytes], ...] = ()
    #: The target's address or fax number from the campaign, even when
    #: ``to_address`` is TEST_MODE_RECIPIENT.
    target_key: str = ""
    #: The envelope sender (SMTP ``MAIL FROM``) a backend should use, where
    #: bounces go: the letter's VERP address when BOUNCE_ADDRESS is set
    #: (app/verp.py). Empty: ``from_address``. Headers never show it.
    return_path: str = ""

    def as_bytes(self, to_address: str | None = None) -> bytes:
        """Return the letter as the bytes of an email (RFC 5322, CRLF line ends, ASCII only).

        ``to_address`` overrides the recipient (a fax gateway's address).
        Clamor writes every header itself (:mod:`app.mailbytes`): display
        names and the subject are encoded, never decoded, so nothing a
        supporter typed can become a header, an address or a body. Headers:
        From, Reply-To, To, Subject, Date, Message-ID, MIME-Version,
        Content-Language, Content-Type, Content-Transfer-Encoding. Attachments
        follow the text as base64 parts of a multipart/mixed message. Raises
        :class:`PermanentFailure` when the letter cannot be written as email
        (a line break in a name, an address that is not one): trying again
        would not change that.
        """
        try:
            return mailbytes.letter_bytes(self, to_address)
        except ValueError as exc:
            raise PermanentFailure(f"the letter cannot be written as email: {exc}") from exc

    def as_email(self, to_address: str | None = None) -> EmailMessage:
        """Return the letter as an :class:`~email.message.EmailMessage`, for plugins that want one.

        It is :meth:`as_bytes` parsed back (``policy.default`` that never
        refolds what it parsed), so it holds exactly what would be sent, and
        writing it out again (``as_bytes()``, ``mailbox``) gives the same
        headers. Raises :class:`PermanentFailure` as :meth:`as_bytes` does.
        """
        return message_from_bytes(self.as_bytes(to_address), policy=_PARSED)


#: Parsing what Clamor wrote: policy.default, but a header it parsed is written
#: back as it came, never refolded (refolding decodes encoded-words first),
#: with the CRLF line ends it came with.
_PARSED = email_policy.default.clone(refold_source="none", linesep="\r\n")


class DeliveryBackend:
    """Base class for a way of sending letters. Plugins subclass it.

    A backend is made once per worker batch with the app's config, sends any
    number of letters, and is closed at the end of the batch.
    """

    #: The name config ``DELIVERY`` uses to pick this backend.
    name: ClassVar[str] = ""
    #: A human name for organisers (``clamor plugins`` shows it).
    verbose_name: ClassVar[str] = ""
    #: What the supporter's own page says of a letter this backend accepted,
    #: a lazy-translated string; None: "sent". A backend whose acceptance is
    #: not yet delivery says so (``fax_email``: "queued for faxing by the gateway").
    sent_label: ClassVar[str | LazyString | None] = None
    #: True for a backend that hands its letters to another registered backend
    #: (``fax_email`` sends its gateway email through ``FAX_VIA``). The core
    #: then registers, for each app, a subclass whose :attr:`backends` is that
    #: app's registry; nothing else needs to reach for it.
    needs_backends: ClassVar[bool] = False
    #: name -> class of every backend the app registered (read-only); None
    #: unless :attr:`needs_backends`.
    backends: ClassVar[Mapping[str, type["DeliveryBackend"]] | None] = None
    #: True if this backend delivers mail whose addresses have a non-ASCII
    #: local part (``ПРИМЕР@example.org``: SMTPUTF8, RFC 6531) to the
    #: supporter and in Reply-To. The action form refuses such addresses while
    #: the backend of ``DELIVERY["email"]`` says False.
    smtputf8: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any]) -> None:
        """Read this backend's own keys from ``config`` (the Flask config).

        Every key the plugin declared in ``register_settings`` is present (its
        default unless the deployment set it). Raise :class:`app.ConfigError`
        naming the keys when they cannot work: start-up makes each backend a
        channel in use names once, and stops with that message.
        """
        self.config: Mapping[str, Any] = config

    def send(self, letter: Letter) -> Receipt:
        """Send ``letter`` and return a :class:`Receipt`.

        Raise :class:`TemporaryFailure` when trying again later may work, and
        :class:`PermanentFailure` when it never will. Any other exception counts
        as temporary.
        """
        raise NotImplementedError

    def check(self) -> str | None:
        """Try this backend's server without sending anything, for ``clamor doctor``; say what answered.

        Return one short line of what was tried ("smtp.example.org:587
        answered EHLO, STARTTLS, AUTH"), or None (the default) when there is
        nothing to try beyond the settings ``__init__`` read. Raise
        :class:`TemporaryFailure` when the server cannot be reached or says
        "later", :class:`PermanentFailure` when it refuses (a wrong password,
        an unknown domain): the message is printed as what to fix, so it
        names the settings and never holds a secret. Called on a fresh
        instance, closed afterwards.
        """
        return None

    def close(self) -> None:
        """Release connections; called after each batch."""

