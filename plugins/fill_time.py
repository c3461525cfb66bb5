"""Spam filter ``fill_time``: a form sent too fast (a bot) or too late (stale).

Each time the form is drawn it carries the time, signed (itsdangerous), in a
hidden field. Sent sooner than ``FILL_TIME_MIN`` seconds after it was drawn,
later than ``FILL_TIME_MAX``, or without a valid stamp, the submission is
rejected: the form comes back, freshly stamped, with the supporter's text kept.
"""

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flask import current_app
from flask_wtf import FlaskForm
from itsdangerous import BadData, URLSafeSerializer
from wtforms import HiddenField

from app import Submission, Verdict, hookimpl, plugin_domain, subkey

#: This plugin's own catalogue, beside it in translations/ (see docs/translating.md).
_l = plugin_domain(__file__, "fill_time").lazy_gettext

FIELD_NAME = "fill_time"

#: This plugin's settings and their defaults (``register_settings``): a form
#: sent sooner or later than this after it was drawn (seconds) comes back.
SETTINGS = {"FILL_TIME_MIN": 3, "FILL_TIME_MAX": 24 * 3600}


def _serializer():
    return URLSafeSerializer(subkey("plugin:fill_time"), salt="clamor.fill_time")


class FillTimeField(HiddenField):
    """Reads the posted stamp into ``drawn_at`` (or None), then stamps the form anew."""

    #: The page draws ``field()`` alone, with no label.
    draw_alone = True
    #: A new stamp every time the form is drawn: the cached page draws this
    #: field per request (docs/plugins.md, extend_action_form).
    per_request = True

    def process(
        self, formdata: Mapping[str, Any] | None, data: Any = None,
        extra_filters: Sequence[Callable[[Any], Any]] | None = None,
    ) -> None:
        super().process(formdata, data, extra_filters)
        self.drawn_at: float | None = None
        if formdata is not None and self.data:
            try:
                self.drawn_at = float(_serializer().loads(self.data))
            except (BadData, TypeError, ValueError):
                self.drawn_at = None
        self.data = _serializer().dumps(time.time())


@hookimpl
def register_settings() -> dict[str, Any]:
    return SETTINGS


@hookimpl
def extend_action_form(form_class: type[FlaskForm], campaign: Any) -> None:
    setattr(form_class, FIELD_NAME, FillTimeField())


@hookimpl
def check_submission(submission: Submission, campaign: Any) -> Verdict | None:
    field = getattr(submission.form, FIELD_NAME, None)
    drawn_at = getattr(field, "drawn_at", None)
    config = current_app.config
    if drawn_at is None:
        return Verdict.reject(_l("Please check your letter and send it again."))
    elapsed = time.time() - drawn_at
    if not config["FILL_TIME_MIN"] <= elapsed <= config["FILL_TIME_MAX"]:
        return Verdict.reject(_l("Please check your letter and send it again."))
    return None
