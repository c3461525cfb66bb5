"""Spam filter ``honeypot``: a field people never see, and form-filling bots fill.

The field sits off-screen (class ``hp-field`` in clamor.css: no inline style,
the Content-Security-Policy forbids it), cannot be reached with the Tab key,
is not autofilled, and its label tells screen-reader users to leave it empty.
Anything in it rejects the submission with a message that does not say why.
"""

from typing import Any

from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import Field, StringField
from wtforms.widgets import TextInput

from app import Submission, Verdict, hookimpl, plugin_domain

#: This plugin's own catalogue, beside it in translations/ (see docs/translating.md).
_l = plugin_domain(__file__, "honeypot").lazy_gettext

#: A name that bots recognise as worth filling.
FIELD_NAME = "website"


class HoneypotInput(TextInput):
    """The input and its label inside the off-screen wrapper; always drawn empty."""

    def __call__(self, field: Field, **kwargs: Any) -> Markup:
        kwargs.update(value="", tabindex="-1", autocomplete="off", maxlength=200)
        return Markup('<div class="hp-field">{} {}</div>').format(field.label(), super().__call__(field, **kwargs))


class HoneypotField(StringField):
    widget = HoneypotInput()
    #: The page draws ``field()`` alone: no visible label, no "[required]".
    draw_alone = True


@hookimpl
def extend_action_form(form_class: type[FlaskForm], campaign: Any) -> None:
    setattr(form_class, FIELD_NAME, HoneypotField(_l("Leave this field empty")))


@hookimpl
def check_submission(submission: Submission, campaign: Any) -> Verdict | None:
    field = getattr(submission.form, FIELD_NAME, None)
    if field is not None and field.data:
        return Verdict.reject(_l("Your letter could not be sent. Please check the form and send it again."))
    return None
