"""The action form a supporter fills in.

The field names (``name``, ``email``, ``organisation``, ``country``,
``message``, ``opt_in``, and ``targets`` where supporters choose targets) are
a contract: integrations and tests post them.
Spam filters add their own fields through the ``extend_action_form`` hook.
"""

import unicodedata
from collections.abc import Callable, Collection, Iterable
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from babel.support import NullTranslations, Translations
from email_validator import EmailNotValidError, validate_email
from flask import current_app, has_request_context, request
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, Field, Form, RadioField, SelectChoice, SelectField, StringField, TextAreaField
from wtforms.i18n import messages_path
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from .i18n import country_choices
from .target_choice import targets_field

if TYPE_CHECKING:
    import pluggy

    from .campaigns import Campaign

#: The fields the page lays out itself; any other field came from a plugin.
CORE_FIELDS = ("name", "email", "organisation", "country", "message", "opt_in", "targets")

#: Characters a letter may contain that are otherwise refused: line breaks
#: and tabs.
LETTER_WHITESPACE = {"\n", "\r", "\t", "\u2028", "\u2029"}

#: Unicode categories refused: control characters (C0 with CR, LF and NUL, DEL,
#: C1) and the line and paragraph separators.
REFUSED_CATEGORIES = {"Cc", "Zl", "Zp"}


def no_control_characters(allowed: Collection[str] = frozenset()) -> Callable[[Form, Field], None]:
    """Validator: refuse control characters and line breaks except those ``allowed``.

    Besides keeping headers and CSV exports clean, this keeps NUL out of the
    database: PostgreSQL refuses it in text, which would be a 500.
    """

    def check(form, field):
        if any(unicodedata.category(c) in REFUSED_CATEGORIES and c not in allowed for c in field.data or ""):
            raise ValidationError(_l("Please remove line breaks and control characters."))

    return check


def too_long(max_length: int) -> Length:
    """Validator: at most ``max_length`` characters, with our own translated message."""
    return Length(max=max_length, message=_l("Please keep this under %(max)d characters."))


#: WTForms' own messages that can reach a supporter, in our words, so that they
#: are translated in our catalogues like every other string on the page.
WTFORMS_MESSAGES = {
    "Not a valid choice.": _l("Please choose one of the options offered."),
    "This field is required.": _l("Please fill in this field."),
}


@cache
def wtforms_catalogue(language: str) -> NullTranslations:
    """WTForms' own catalogue in ``language``, read once per process.

    (Flask-WTF reads and parses the .mo file again for every request that
    asks: a sixth of a page view.)
    """
    return Translations.load(messages_path(), [language], domain="wtforms")


class BuiltinMessages:
    """The ``gettext``/``ngettext`` WTForms uses for its built-in messages.

    Ours where :data:`WTFORMS_MESSAGES` has one; otherwise WTForms' own
    catalogue in the request's language, so nothing is ever shown
    untranslated because of this class.
    """

    def gettext(self, string: str) -> str:
        if string in WTFORMS_MESSAGES:
            return str(WTFORMS_MESSAGES[string])
        return wtforms_catalogue(str(get_locale())).gettext(string)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return wtforms_catalogue(str(get_locale())).ngettext(singular, plural, n)


def valid_email(form: Form, field: Field) -> None:
    """Validator: a syntactically valid address (no DNS look-up); stores it normalised.

    An address whose local part is not ASCII (``ПРИМЕР@example.org``) needs
    SMTPUTF8 end to end; it is refused unless the backend that sends email
    (``DELIVERY["email"]``) says it has that (:attr:`DeliveryBackend.smtputf8`),
    or every letter carrying it in Reply-To would fail. Internationalised
    domains need nothing of the kind and are accepted.
    """
    try:
        address = validate_email(field.data or "", check_deliverability=False)
    except EmailNotValidError:
        raise ValidationError(_l("Please enter a valid email address.")) from None
    if address.smtputf8 and not _email_backend_has_smtputf8():
        raise ValidationError(_l("Please give an address without accents or non-Latin letters before the @: "
                                 "letters cannot be sent with this one."))
    field.data = address.normalized


def _email_backend_has_smtputf8():
    config = current_app.config
    backend = current_app.extensions["clamor"].backends.get(config["DELIVERY"].get("email"))
    return bool(getattr(backend, "smtputf8", False))


class CountryField(SelectField):
    """A country code from the list, or "" for none given."""

    def pre_validate(self, form: Form) -> None:
        # Not Optional(): it would let whitespace and line breaks through as
        # "empty" and keep them as the data.
        if self.data not in {choice.value for choice in self.choices}:
            raise ValidationError(_l("Please choose a country from the list."))


class PostedForm(FlaskForm):
    """Base of every form in Clamor: its fields are fed from ``request.form`` only.

    Flask-WTF would also feed them uploaded files (``request.files``) and a
    JSON body; a field posted as a file would then hold a ``FileStorage``
    where every validator expects text, and answer 500. Here such a field is
    empty and the form invalid, with "Please fill in this field." on it: not
    even a field with a default (the letter) may stand in for it.
    """

    class Meta:
        def wrap_formdata(self, form: Form, formdata: Any) -> Any:
            wrapped = super().wrap_formdata(form, formdata)
            if wrapped is not None and wrapped is not formdata:
                # Taken from the request (not passed in): the form part only.
                return request.form or None
            return wrapped

    def validate(self, extra_validators: dict[str, list[Callable[..., Any]]] | None = None) -> bool:
        valid = super().validate(extra_validators)
        uploaded = [field for field in self if has_request_context() and field.name in request.files]
        for field in uploaded:
            field.errors.append(WTFORMS_MESSAGES["This field is required."])
        return valid and not uploaded


class ActionForm(PostedForm):
    """The fields every campaign asks for. Use :func:`make_action_form`."""

    class Meta:
        def get_translations(self, form: Form) -> BuiltinMessages:
            return BuiltinMessages()

    name = StringField(
        _l("Name"),
        validators=[DataRequired(_l("Please enter your name.")), too_long(200), no_control_characters()],
        render_kw={"autocomplete": "name", "maxlength": 200},
    )
    email = EmailField(
        _l("Email"),
        validators=[
            DataRequired(_l("Please enter your email address.")),
            too_long(320),
            no_control_characters(),
            valid_email,
        ],
        render_kw={"autocomplete": "email", "maxlength": 320},
    )
    organisation = StringField(
        _l("Union/organisation"),
        validators=[Optional(), too_long(200), no_control_characters()],
        render_kw={"autocomplete": "organization", "maxlength": 200},
    )
    country = CountryField(_l("Your country"), validators=[no_control_characters()])
    message = TextAreaField(_l("Your message"))
    opt_in = RadioField(
        _l("I want to receive other urgent alerts"),
        choices=[SelectChoice("yes", _l("Yes")), SelectChoice("no", _l("No"))],
        default="no",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.country.choices = _country_select_choices(str(get_locale()))


@lru_cache(maxsize=32)
def _country_select_choices(locale):
    """The country <select>'s choices in ``locale``, sorted once per locale and shared (read-only) by every form.

    Sorting ~250 names with a Python collation key took 15-30% of a page view
    when it ran for every form.
    """
    return tuple([SelectChoice("", _l("Choose…"))] + [SelectChoice(*c) for c in country_choices(locale)])


def make_action_form(campaign: "Campaign", language: str, filters: "pluggy.HookCaller") -> type[ActionForm]:
    """Return a fresh :class:`ActionForm` subclass for ``campaign``.

    The letter is pre-filled in ``language``; ``filters`` is the
    ``extend_action_form`` caller of the enabled spam filters.
    """
    max_length = current_app.config["MESSAGE_MAX_LENGTH"]

    class CampaignActionForm(ActionForm):
        message = TextAreaField(
            _l("Your message"),
            default=campaign.text(language).letter,
            validators=[
                DataRequired(_l("Please write your message.")),
                Length(max=max_length, message=_l("Your message is too long (%(max)d characters at most).")),
                no_control_characters(LETTER_WHITESPACE),
            ],
            render_kw={"rows": 14, "maxlength": max_length},
        )

    if campaign.targets_selectable:
        CampaignActionForm.targets = targets_field(campaign)
    filters(form_class=CampaignActionForm, campaign=campaign)
    return CampaignActionForm


def extra_fields(form: Iterable[Field]) -> list[Field]:
    """The fields plugins added, in the order they were declared."""
    return [field for field in form if field.name not in CORE_FIELDS and field.name != "csrf_token"]
