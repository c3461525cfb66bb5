"""A digest's email: the cover, the campaign's letter once, every signer, every letter in its own words.

Built by the worker when the digest goes (:mod:`app.digests` gathers it), from
the letters still in it then, in the target's ``language`` (else the
campaign's default), inside ``force_locale`` like any letter. Nothing in it
is a supporter's address: the digest answers to the union (Reply-To is
SENDER_ADDRESS), and a hundred people's addresses are not the target's to
collect. A faxed target gets the same text as a PDF (the fax backend
renders any letter's body).
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask_babel import force_locale, format_date, ngettext
from flask_babel import gettext as _

from .. import verp
from ..digests import members
from ..models import Delivery, utcnow
from .contract import Letter, PermanentFailure
from .letters import country_name, one_line

if TYPE_CHECKING:
    from ..campaigns import Campaign


def build_digest(delivery: Delivery, campaign: "Campaign", config: Mapping[str, Any]) -> Letter:
    """The :class:`Letter` of the digest ``delivery``; PermanentFailure when no letter is left in it.

    Every supporter in it may have been forgotten since it was gathered:
    then there is nothing to send, and the digest fails, visibly, with no
    supporter's letter in it.
    """
    letters = members(delivery.id)
    if not letters:
        raise PermanentFailure("no letter is left in this digest (their supporters were forgotten)")
    target = campaign.target(delivery.target_key)
    language = target.language if target is not None and target.language else campaign.default_language
    test_recipient = config.get("TEST_MODE_RECIPIENT")
    with force_locale(language):
        text = campaign.text(language)
        sender = one_line(campaign.sender or text.short_name)
        subject = ngettext("%(subject)s (%(num)d letter)", "%(subject)s (%(num)d letters)", len(letters),
                           subject=one_line(text.subject))
        return Letter(
            delivery_id=delivery.id,
            campaign=campaign.slug,
            language=language,
            channel=delivery.channel,
            from_name=sender,
            from_address=config["SENDER_ADDRESS"],
            reply_to_name=sender,
            reply_to_address=config["SENDER_ADDRESS"],
            to_name=target.name if target is not None else "",
            to_address=test_recipient or delivery.target_key,
            subject=("[TEST] " if test_recipient else "") + subject,
            body=digest_body(letters, text.letter, language),
            message_id=delivery.message_id,
            date=utcnow(),
            attempt=delivery.attempts,
            target_key=delivery.target_key,
            return_path=verp.return_path(delivery.id, bounce) if (bounce := config.get("BOUNCE_ADDRESS")) else "",
        )


def digest_body(letters: list[Delivery], letter_text: str, language: str) -> str:
    """The digest's text, in the current locale: cover, the letter, the signers, the letters in their own words."""
    signatures = [letter.signature for letter in letters]
    first = min(signature.created_at for signature in signatures)
    last = max(signature.created_at for signature in signatures)
    parts = [
        ngettext("%(num)d person sent you this letter between %(start)s and %(end)s.",
                 "%(num)d people sent you this letter between %(start)s and %(end)s.", len(signatures),
                 start=format_date(first, "long"), end=format_date(last, "long")),
        letter_text.strip(),
        _("Signed by:") + "\n" + "\n".join(_signer(signature, language) for signature in signatures),
    ]
    edited = [signature for signature in signatures if signature.edited]
    if edited:
        parts.append(ngettext("%(num)d of them wrote the letter in their own words:",
                              "%(num)d of them wrote the letter in their own words:", len(edited)))
        for signature in edited:
            parts.append(f"— {_signer(signature, language)}\n\n{signature.message.strip()}")
    return "\n\n".join(parts) + "\n"


def _signer(signature, language):
    """One line: name, organisation, country (in ``language``), whatever of them was given."""
    fields = (one_line(signature.name), one_line(signature.organisation), country_name(signature.country, language))
    return ", ".join(field for field in fields if field)
