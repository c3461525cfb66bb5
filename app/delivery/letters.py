"""Building letters: one Delivery row per target of a signature, and the Letter each becomes.

A letter is built in the worker, in its target's language (``force_locale``),
from finished strings; mail to the supporter's own mailbox was rendered in the
request and is only wrapped here.
"""

import functools
import re
import secrets
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from babel import Locale
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import insert, select

from .. import mailbytes, verp
from ..extensions import db
from ..models import Delivery, Organiser, Signature, utcnow
from ..states import DeliveryStatus, suspended_keys
from .contract import Letter

if TYPE_CHECKING:
    from ..campaigns import Campaign, Target

_SPACES = re.compile(r"\s+")
#: Built once: every signature runs it (its letters, the mail to its supporter).
_INSERT = insert(Delivery.__table__)


def one_line(value: str | None) -> str:
    """Collapse every run of whitespace (CR and LF included) into one space."""
    return _SPACES.sub(" ", value or "").strip()


def new_message_id(sender_address: str) -> str:
    """A fresh Message-ID, ``<128 random bits in hex@the sender's domain>``; stored once per delivery.

    Nothing else goes into it: ``make_msgid`` would tell every target the
    time of signing and the worker's process id.
    """
    domain = sender_address.rpartition("@")[2]
    try:
        domain = mailbytes.addr_spec(f"x@{domain}").partition("@")[2]
    except ValueError:
        domain = "localhost"
    return f"<{secrets.token_hex(16)}@{domain}>"


def country_name(code: str | None, language: str) -> str:
    """The name of ISO country ``code`` in ``language`` (CLDR), or "" for none."""
    if not code:
        return ""
    return _territories(language).get(code, code)


@functools.lru_cache(maxsize=64)
def _via(app, language):
    # "Anna via Free Erzhan" in ``language``, before its names are put in:
    # looked up once, not once a letter (force_locale and gettext were a
    # tenth of building one).
    with force_locale(language):
        return _("%(name)s via %(campaign)s")


@functools.cache
def _territories(language):
    # Parsing the locale and finding its table: about 6 µs of every letter, measured.
    return Locale.parse(language).territories


def build_letter(delivery: Delivery, campaign: "Campaign", config: Mapping[str, Any]) -> Letter:
    """Build the :class:`Letter` for ``delivery`` in the language of its target.

    The supporter's text is sent as written; the sender's name ("… via …"),
    the subject and the signature block are in the letter's language, never
    the worker's default. With ``TEST_MODE_RECIPIENT`` set the letter goes to that
    address instead, its subject marked "[TEST] ".
    """
    if delivery.kind != "letter":
        return _mailbox_letter(delivery, campaign, config)
    test_recipient = config.get("TEST_MODE_RECIPIENT")
    signature = delivery.signature
    target = campaign.target(delivery.target_key)
    to_name = target.name if target else ""
    language, message = letter_words(signature, target, campaign)
    text = campaign.text(language)
    block = [
        one_line(signature.name),
        one_line(signature.organisation),
        country_name(signature.country, language),
        # A fax is printed and filed: the supporter's address stays out of
        # it (an email letter carries it in Reply-To anyway).
        signature.email if delivery.channel != "fax" else "",
    ]
    body = message.strip() + "\n\n" + "\n".join(line for line in block if line) + "\n"
    return Letter(
        delivery_id=delivery.id,
        campaign=campaign.slug,
        language=language,
        channel=delivery.channel,
        from_name=_via(current_app._get_current_object(), language) % {
            "name": one_line(signature.name), "campaign": one_line(text.short_name)},
        from_address=config["SENDER_ADDRESS"],
        reply_to_name=one_line(signature.name),
        reply_to_address=signature.email,
        to_name=to_name,
        to_address=test_recipient or delivery.target_key,
        subject=("[TEST] " if test_recipient else "") + one_line(text.subject_for(signature.subject_choice)),
        body=body,
        message_id=delivery.message_id,
        date=utcnow(),
        attempt=delivery.attempts,
        target_key=delivery.target_key,
        # Only letters to targets: a bounce from a supporter's or an
        # organiser's mailbox says nothing of a target.
        return_path=verp.return_path(delivery.id, bounce) if (bounce := config.get("BOUNCE_ADDRESS")) else "",
    )


def letter_words(signature: Signature, target: "Target | None", campaign: "Campaign") -> tuple[str, str]:
    """(language, text) of ``signature``'s letter to ``target``: the language labels the whole letter.

    A supporter who kept the campaign's letter reaches a target with its own
    ``language`` in the campaign's letter in that language; every other
    letter is the supporter's text as written, in the language of the page
    they wrote it on (or the campaign's default, if the campaign no longer
    has that language). The subject, ``Content-Language`` and the signature
    block follow the language, so a Russian letter never says "Russie".
    """
    if target is not None and target.language and not signature.edited:
        return target.language, campaign.text(target.language).letter
    language = signature.language if signature.language in campaign.texts else campaign.default_language
    return language, signature.message


def _mailbox_letter(delivery, campaign, config):
    # Mail to the supporter's own mailbox (confirmation, receipt, reminder),
    # or to an organiser (an alert). Its text was rendered when it was queued,
    # in its reader's language; the worker only wraps it, so it never
    # translates in its own locale. Nothing the supporter typed goes in it,
    # not even their name: the form must not be a way to mail anyone any
    # text from the union's address.
    signature = delivery.signature
    language = signature.language if signature is not None else campaign.default_language
    text = campaign.text(language)
    sender = one_line(campaign.sender or text.short_name)
    return Letter(
        delivery_id=delivery.id,
        campaign=campaign.slug,
        language=language,
        channel=delivery.channel,
        from_name=sender,
        from_address=config["SENDER_ADDRESS"],
        reply_to_name=sender,
        reply_to_address=config["SENDER_ADDRESS"],
        to_name="",
        to_address=signature.email if signature is not None else delivery.target_key,
        subject=one_line(delivery.subject),
        body=delivery.body,
        message_id=delivery.message_id,
        date=utcnow(),
    )


#: Kinds of Delivery that go to the supporter's own mailbox, not to a target.
MAILBOX_KINDS = ("confirmation", "receipt", "reminder")


def queue_mailbox_email(signature: Signature, config: Mapping[str, Any], kind: str, subject: str, body: str) -> None:
    """Add an email to ``signature``'s own mailbox (one of :data:`MAILBOX_KINDS`) with finished text; not committed.

    ``signature`` must have been flushed (it needs its id).
    """
    if kind not in MAILBOX_KINDS:
        raise ValueError(kind)
    # By id, not through ``signature.deliveries``: appending would load an
    # earlier signature's letters first, and a repeat signer's answer must
    # cost what a new signer's costs (app/signing.py). A statement of its
    # own, like the letters (:func:`insert_letters`), not an object to flush.
    db.session.connection().execute(_INSERT, {
        "signature_id": signature.id,
        "campaign": signature.campaign,
        "kind": kind,
        "target_key": signature.email,
        "channel": "email",
        "status": DeliveryStatus.PENDING,
        "message_id": new_message_id(config["SENDER_ADDRESS"]),
        "subject": subject,
        "body": body,
    })



#: The kind of Delivery that goes to an organiser (an alert about the campaign's letters).
ORGANISER_KIND = "organiser"


def queue_organiser_emails(campaign_slug: str, config: Mapping[str, Any], subject: str, body: str) -> int:
    """Add one email with finished text to every organiser, about campaign ``campaign_slug``; return how many.

    Not committed: the caller commits it with whatever it reports on, so an
    alert is queued exactly when its cause is recorded. It goes through the
    outbox like any letter (the campaign's ``email`` backend, retried,
    visible in ``clamor deliveries``), in the language the caller rendered
    ``subject`` and ``body`` in (the campaign's default language is the one
    organisers are assumed to read).
    """
    emails = db.session.scalars(select(Organiser.email).order_by(Organiser.id)).all()
    for email in emails:
        db.session.add(
            Delivery(
                signature_id=None,
                campaign=campaign_slug,
                kind=ORGANISER_KIND,
                target_key=email,
                channel="email",
                status=DeliveryStatus.PENDING,
                message_id=new_message_id(config["SENDER_ADDRESS"]),
                subject=subject,
                body=body,
            )
        )
    return len(emails)


def new_letters(
    campaign: "Campaign", config: Mapping[str, Any],
    status: DeliveryStatus = DeliveryStatus.PENDING, targets: Collection[str] | None = None,
    suspended: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """The letters one signature of ``campaign`` sends, one per target: each a Delivery's columns (no signature yet).

    ``status``: what :func:`app.states.letter_status` says for the signature;
    a letter to a suspended target is held (:mod:`app.states.targets`).
    ``targets``: the keys of the targets to write to (the supporter's choice);
    None: every target. ``suspended``: the suspended target keys, if read
    already (:func:`app.states.suspended_keys`). :func:`insert_letters` stores
    them; :func:`queue_deliveries` adds them to a signature as objects.
    """
    if suspended is None:
        suspended = suspended_keys(target.key for target in campaign.targets)
    return [
        {
            "campaign": campaign.slug,
            "kind": "letter",
            "target_key": target.key,
            "channel": target.channel,
            "status": DeliveryStatus.HELD if target.key in suspended else status,
            "note": "target suspended" if target.key in suspended else "",
            "message_id": new_message_id(config["SENDER_ADDRESS"]),
        }
        for target in campaign.targets
        if targets is None or target.key in targets
    ]


def insert_letters(signature_id: int, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (:func:`new_letters`) as signature ``signature_id``'s letters, in one statement; not committed.

    One executemany on the session's connection, not the ORM's unit of work:
    on SQLite the ORM inserts one row per statement (to read each new id
    back), and its flush was a third of a signature's time, inside the write
    lock. Nothing in the request needs the letters' ids or objects.
    """
    if rows:
        db.session.connection().execute(_INSERT, [{**row, "signature_id": signature_id} for row in rows])


def queue_deliveries(
    signature: Signature, campaign: "Campaign", config: Mapping[str, Any],
    status: DeliveryStatus = DeliveryStatus.PENDING, targets: Collection[str] | None = None,
) -> None:
    """Add one Delivery per target of ``campaign`` to ``signature`` (not committed): :func:`new_letters` as objects."""
    for row in new_letters(campaign, config, status, targets):
        signature.deliveries.append(Delivery(**row))
