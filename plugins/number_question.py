"""Spam filter ``number_question``: "Enter the number 5120 here".

Each time the form is drawn it shows a fresh 4-digit number, as text in the
label so screen readers read it, and carries it signed (itsdangerous) in a
hidden field with a random nonce: nobody can forge an answer, and one answer
cannot be replayed. The nonce is spent (table ``used_token``) in the
transaction that stores the signature, so a signed answer lets through one
letter only, even when two requests race with it. The same form sent twice
(a double click on Send) gets the first answer again, and stores nothing.
"""

import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from flask_wtf import FlaskForm
from itsdangerous import BadData, URLSafeTimedSerializer
from markupsafe import Markup
from wtforms import Field, Form, StringField
from wtforms.fields.core import Label
from wtforms.validators import ValidationError
from wtforms.widgets import TextInput

from app import hookimpl, plugin_domain, subkey, token_spent, utcnow

#: This plugin's own catalogue: translations/<lang>/LC_MESSAGES/number_question.po
#: beside this file, so the plugin carries its words wherever it is installed.
domain = plugin_domain(__file__, "number_question")
_ = domain.gettext
_l = domain.lazy_gettext

FIELD_NAME = "number_question"
#: How long a drawn form stays answerable (seconds).
MAX_AGE = 24 * 3600


def _serializer():
    return URLSafeTimedSerializer(subkey("plugin:number_question"), salt="clamor.number_question")


class NumberQuestionInput(TextInput):
    """The answer box (always drawn empty) and the signed number beside it."""

    def __call__(self, field: Field, **kwargs: Any) -> Markup:
        kwargs.update(value="", inputmode="numeric", autocomplete="off", maxlength=8)
        token = Markup('<input type="hidden" name="{}" value="{}">').format(field.token_name, field.token)
        return token + super().__call__(field, **kwargs)


class NumberQuestionField(StringField):
    widget = NumberQuestionInput()
    #: A new number every time the form is drawn: the cached page draws this
    #: field per request (docs/plugins.md, extend_action_form).
    per_request = True

    def process(
        self, formdata: Mapping[str, Any] | None, data: Any = None,
        extra_filters: Sequence[Callable[[Any], Any]] | None = None,
    ) -> None:
        super().process(formdata, data, extra_filters)
        self.token_name = f"{self.name}-token"
        self.expected: str | None
        self.nonce: str | None
        self.expected = self.nonce = None
        self.one_time_token: tuple[str, datetime] | None = None
        self.spent_token: str | None = None
        if formdata is not None and formdata.get(self.token_name):
            try:
                signed = _serializer().loads(formdata[self.token_name], max_age=MAX_AGE)
                self.expected, self.nonce = str(signed["n"]), str(signed["nonce"])
            except (BadData, KeyError, TypeError):
                self.expected = self.nonce = None
        # Drawn again (after an error too), the form asks a new number.
        self.number = f"{1000 + secrets.randbelow(9000)}"
        self.token = _serializer().dumps({"n": self.number, "nonce": secrets.token_hex(16)})
        self.label = Label(self.id, _("Stop spam! Enter the number %(number)s here:", number=self.number))

    def pre_validate(self, form: Form) -> None:
        if self.expected is None:
            raise ValidationError(_l("This form has expired. Please enter the new number shown."))
        if (self.data or "").strip() != self.expected:
            raise ValidationError(_l("That is not the number shown. Please enter the number you see."))
        if token_spent(self.nonce):
            # The core answers the same form sent again (a double click) as
            # it answered the first time (app.spam.form_sent_already).
            self.spent_token = self.nonce
            raise ValidationError(_l("This form was sent already. Please enter the new number shown."))
        # A token older than MAX_AGE is refused by its signature, so the
        # spent nonce need not be remembered longer than that.
        self.one_time_token = (self.nonce, utcnow() + timedelta(seconds=MAX_AGE))


@hookimpl
def extend_action_form(form_class: type[FlaskForm], campaign: Any) -> None:
    setattr(form_class, FIELD_NAME, NumberQuestionField())
