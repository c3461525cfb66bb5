"""Every hook a Clamor plugin can implement.

Plugins import one name, ``from app import hookimpl``, and mark functions with
it; the function's name picks the hook. docs/plugins.md has a section for each
hook below, and a test fails when one is missing.
"""

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from flask import Blueprint

    from .campaigns import Campaign
    from .delivery import DeliveryBackend, PermanentFailure, Receipt, TemporaryFailure
    from .forms import ActionForm
    from .models import Delivery
    from .spam import Submission, Verdict

hookspec = pluggy.HookspecMarker("clamor")
hookimpl = pluggy.HookimplMarker("clamor")


@hookspec
def register_delivery_backends() -> "list[type[DeliveryBackend]] | None":
    """Return a list of :class:`app.delivery.DeliveryBackend` subclasses.

    Called once at start-up, after :func:`register_settings`. The core keeps
    a registry by each class's ``name``; configuration ``DELIVERY`` picks one
    backend per channel by that name. Returning None or ``[]`` registers nothing. Two classes with the same
    name, or a ``DELIVERY`` entry naming no registered class, stop start-up.
    """


@hookspec
def register_settings(instance_path: str) -> dict[str, Any] | None:
    """Return ``{KEY: default}``: the settings this plugin reads, with their defaults.

    :param instance_path: the deployment's instance folder (a ``str``), for a
        default that lives there (``outbox_files``: ``instance/outbox``).

    Called once at start-up, after every plugin is loaded and before any
    backend is made or the configuration is checked. Each key that
    ``app/config.py``, ``instance/config.py``, ``CLAMOR_*`` and ``test_config``
    left unset (or set to None) gets this default, so a backend's
    ``__init__`` and a filter can read ``config[KEY]`` without ``.get``.
    Returning None or ``{}`` declares nothing. Two plugins giving one key
    different defaults, or a plugin giving a default to a core setting (one
    that ``app/config.py`` defines), stop start-up.
    """


@hookspec
def register_blueprints() -> "list[Blueprint] | None":
    """Return Flask blueprints for the app to serve: a provider's webhook, say.

    Called once at start-up; they are registered after Clamor's own. A
    blueprint whose name, or a URL rule whose path and method, another
    blueprint has already stops start-up, naming the plugin. Their requests
    pass through what every request does: TRUSTED_HOSTS, the security headers
    (no third-party origin), and the CSRF check on every POST, which a
    provider's signed webhook (no form) turns off for its blueprint with
    :func:`app.csrf_exempt`. A view has no rate limit unless it sets one with
    :func:`app.rate_limit`. A provider's report is recorded with
    :func:`app.find_sent_letter` and :func:`app.record_provider_report`.
    """


@hookspec
def extend_action_form(form_class: "type[ActionForm]", campaign: "Campaign") -> None:
    """Add fields to the action form before it is drawn or validated.

    :param form_class: a fresh subclass of :class:`app.forms.ActionForm`, made
        for this request only; set new fields on it with ``setattr``.
    :param campaign: the :class:`app.campaigns.Campaign` being signed.

    Only enabled spam filters (config ``SPAM_FILTERS``) are called. The return
    value is ignored. A field's own validators run with the form's; their
    messages are shown beside the field, in the page's language. A field with
    ``draw_alone = True`` is drawn as ``field()`` only (hidden fields, the
    honeypot). A field that sets ``one_time_token = (nonce, expires_at)`` while
    validating has the nonce spent with the signature (see
    :func:`app.spam.spend_tokens`). One that finds its nonce spent sets
    ``spent_token = nonce`` before raising: the very form that spent it, sent
    again (a double click on Send), then gets the first answer instead of the
    field's error (:func:`app.spam.form_sent_already`).
    """


@hookspec
def check_submission(submission: "Submission", campaign: "Campaign") -> "Verdict | None":
    """Give a verdict on a submission whose form already validated.

    :param submission: an :class:`app.spam.Submission` (the cleaned fields, the
        bound form, the page language and a keyed hash of the client address).
    :param campaign: the :class:`app.campaigns.Campaign` being signed.

    Return None for no objection, ``Verdict.reject(reason)`` to send the form
    back with ``reason`` shown and nothing stored, ``Verdict.hold(reason)`` to
    store the signature as held: its letters go out only after a moderator
    approves, or ``Verdict.drop(reason)`` to answer exactly as for an accepted
    letter while storing and sending nothing (for what the supporter must not
    learn, such as having signed before; ``reason`` is only logged).
    ``reason`` should be a lazy-translated string. Every enabled filter is
    called (not first-result); the strictest verdict wins (reject, then drop,
    then hold) and every reason is logged. A filter that raises is a bug: the
    submission is held, not lost.
    """


@hookspec
def letter_sent(delivery: "Delivery", receipt: "Receipt") -> None:
    """Called after a backend accepted a letter, once its outcome is committed.

    :param delivery: the :class:`app.models.Delivery`, already marked sent.
    :param receipt: the backend's :class:`app.delivery.Receipt`.

    The return value is ignored; an exception is logged and does not undo the
    delivery.
    """


@hookspec
def letter_bounced(delivery: "Delivery", report: str) -> None:
    """Called after a provider's report of a permanent failure made a letter bounced, and was committed.

    :param delivery: the :class:`app.models.Delivery`, already marked
        bounced, with the report as its ``note``.
    :param report: the provider's text (e.g. Mailgun's delivery-status
        message): the target's mail server's words, no supporter's address.

    The return value is ignored; an exception is logged and does not undo the
    bounce.
    """


@hookspec
def letter_failed(delivery: "Delivery", error: "PermanentFailure | TemporaryFailure") -> None:
    """Called when a letter is given up on for good (status ``failed``), once that is committed.

    :param delivery: the :class:`app.models.Delivery`, already marked failed,
        with ``last_error`` set.
    :param error: the exception that ended it (a ``PermanentFailure`` or
        ``TemporaryFailure``), its text as stored in ``last_error``: no
        supporter's address, and no cause.

    The return value is ignored; an exception is logged.
    """
