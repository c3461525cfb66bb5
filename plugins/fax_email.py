"""Delivery backend ``fax_email``: faxes a letter through a fax-to-email gateway.

The letter becomes an A4 PDF (fpdf2, in the DejaVu Sans shipped in
``plugins/fonts/``, which has every Kazakh and Cyrillic letter), attached to an
email to the gateway's address for the target's number, e.g.
``+77172123456@fax.tc``. That email goes out through another registered
backend (``FAX_VIA``; by default the one ``DELIVERY["email"]`` names), so the
gateway's acceptance means "queued for faxing", not "faxed".

Settings (:data:`SETTINGS`): FAX_ADDRESS_TEMPLATE ({e164}, {digits},
{national}), FAX_SUBJECT_TEMPLATE, FAX_BODY_PREFIX, FAX_SENDER, FAX_REPLY_TO,
FAX_VIA. The email backend comes from the registry the core gives this class
(``needs_backends``), never from the app.
"""

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# parse_fax_number and FaxNumberError are re-exported: the parser moved to the
# core, and other code imports it from here.
from app import (
    ConfigError,
    DeliveryBackend,
    FaxNumberError,
    Letter,
    PermanentFailure,
    Receipt,
    hookimpl,
    parse_fax_number,
    plugin_domain,
)

#: This plugin's own catalogue, beside it in translations/ (see docs/translating.md).
_l = plugin_domain(__file__, "fax_email").lazy_gettext

#: This plugin's settings and their defaults (``register_settings``).
SETTINGS = {
    #: The gateway address with {e164}, {digits} or {national}, e.g.
    #: "{e164}@fax.tc" (InterFAX). Unset, a campaign with fax targets stops start-up.
    "FAX_ADDRESS_TEMPLATE": None,
    #: Subject of the gateway email; {to_name}, {subject} and {fax} are filled in.
    "FAX_SUBJECT_TEMPLATE": "{subject}",
    #: Text the gateway reads from the email body, e.g. eFax's "{nocoverpage}".
    "FAX_BODY_PREFIX": "",
    #: The sender address registered with the gateway; None: SENDER_ADDRESS.
    "FAX_SENDER": None,
    #: Reply-To of the gateway email, where gateways such as InterFAX send their
    #: reports; None: FAX_SENDER. Never the supporter: a paper fax cannot be
    #: answered by email, and the gateway need not learn their address.
    "FAX_REPLY_TO": None,
    #: The email backend that carries the fax email; None: the one DELIVERY["email"] names.
    "FAX_VIA": None,
}

#: DejaVu Sans, shipped beside this plugin: every Kazakh and Cyrillic letter.
FONT = Path(__file__).resolve().parent / "fonts" / "DejaVuSans.ttf"


def fax_text(letter: Letter) -> str:
    """The text printed on the fax: the addressee, the subject, then the letter."""
    return f"{letter.to_name}\n{letter.subject}\n\n{letter.body}"


def render_pdf(letter: Letter) -> bytes:
    """The letter as an A4 PDF (bytes)."""
    # Imported here: fpdf2 takes ~0.5 s to import, which every `clamor`
    # command would pay at start-up, faxing or not.
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="mm")
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(True, margin=20)
    pdf.set_title(letter.subject)
    pdf.set_lang(letter.language)
    pdf.add_font("DejaVuSans", fname=str(FONT))
    pdf.set_font("DejaVuSans", size=11)
    pdf.add_page()
    pdf.multi_cell(0, 5.5, fax_text(letter), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


class FaxEmailBackend(DeliveryBackend):
    name = "fax_email"
    verbose_name = "Fax through a fax-to-email gateway"
    #: The gateway's acceptance means queued for faxing, not faxed: the
    #: supporter's page says so.
    sent_label = _l("queued for faxing by the gateway")
    #: The core gives this class its registry (``backends``): the email
    #: backend FAX_VIA names is made from it.
    needs_backends = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        """Raises :class:`ConfigError` without FAX_ADDRESS_TEMPLATE (no fax could be addressed) or
        when FAX_VIA names no other registered backend.

        Start-up and ``clamor campaign check`` make the backend once when a
        campaign has fax targets, so either mistake stops them instead of
        failing every fax letter.
        """
        super().__init__(config)
        if not config.get("FAX_ADDRESS_TEMPLATE"):
            raise ConfigError(
                "FAX_ADDRESS_TEMPLATE is not set, so fax letters cannot be sent: set it to your fax-to-email "
                "gateway's address, e.g. FAX_ADDRESS_TEMPLATE = \"{e164}@fax.tc\" (see docs/delivery.md)"
            )
        self.address_template = config["FAX_ADDRESS_TEMPLATE"]
        self.subject_template = config["FAX_SUBJECT_TEMPLATE"]
        self.body_prefix = config["FAX_BODY_PREFIX"] or ""
        self.sender = config["FAX_SENDER"] or config["SENDER_ADDRESS"]
        self.reply_to = config["FAX_REPLY_TO"] or self.sender
        self.via = config["FAX_VIA"] or config["DELIVERY"].get("email")
        registry = self.backends or {}
        if self.via == self.name or self.via not in registry:
            known = ", ".join(sorted(n for n in registry if n != self.name)) or "none"
            raise ConfigError(f"FAX_VIA names {self.via!r}, which is not an email backend. Known: {known}.")
        self._email_backend = None

    def send(self, letter: Letter) -> Receipt:
        """Render the PDF, email it to the gateway, return "queued for faxing".

        Raises :class:`PermanentFailure` for a number that is not
        international; the email backend's own failures pass through
        unchanged.
        """
        try:
            number = parse_fax_number(letter.target_key or letter.to_address)
            gateway = number.format(self.address_template)
            subject = self.subject_template.format(subject=letter.subject, to_name=letter.to_name, fax=number.e164)
        except (FaxNumberError, KeyError, IndexError) as exc:
            raise PermanentFailure(f"cannot address the fax: {exc}") from exc
        if self.config.get("TEST_MODE_RECIPIENT"):
            # Rehearsal: the organiser gets the gateway email, PDF and all.
            gateway = letter.to_address
        email = dataclasses.replace(
            letter,
            to_address=gateway,
            from_address=self.sender,
            # The gateway's reports go to the organiser, not the supporter.
            reply_to_name="",
            reply_to_address=self.reply_to,
            subject=subject,
            # Only the prefix: several gateways fax the body text as a page of its own.
            body=self.body_prefix,
            attachments=letter.attachments + (
                (f"letter-{letter.delivery_id}.pdf", "application/pdf", render_pdf(letter)),
            ),
        )
        receipt = self._backend().send(email)
        return dataclasses.replace(receipt, note=f"queued for faxing by {gateway}")

    def _backend(self):
        # Made on first use: a batch without fax letters opens no second connection.
        if self._email_backend is None:
            self._email_backend = self.backends[self.via](self.config)
        return self._email_backend

    def check(self) -> str | None:
        """The check of the email backend the gateway email goes through (FAX_VIA); the gateway itself
        cannot be tried without sending a fax."""
        answer = self._backend().check()
        return f"through {self.via}: {answer}" if answer else None

    def close(self) -> None:
        if self._email_backend is not None:
            self._email_backend.close()
            self._email_backend = None


@hookimpl
def register_settings() -> dict[str, Any]:
    return SETTINGS


@hookimpl
def register_delivery_backends() -> list[type[DeliveryBackend]]:
    return [FaxEmailBackend]
