"""Error pages: translated, friendly, never a stack trace."""

import logging
import time
from typing import Any

from flask import Flask, Response, current_app, g, render_template, request
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError

log = logging.getLogger(__name__)

#: status -> (title, explanation) shown to the visitor.
MESSAGES = {
    400: (_l("Something was wrong with that request"), _l("Please go back and try again.")),
    403: (_l("This action is not possible"), _l("This campaign does not accept signatures any more.")),
    404: (_l("Page not found"),
          _l("There is no page at this address. Check the link, or start from the campaign page.")),
    405: (_l("This action is not possible"), _l("Please go back and try again.")),
    413: (_l("Too much text"), _l("What you sent is too long. Please shorten your message and send it again.")),
    429: (_l("Please wait a moment"),
          _l("Too many letters were sent from your connection. Please wait a little and try again.")),
    500: (_l("Something went wrong on our side"),
          _l("Your letter may not have been stored. Please try again in a few minutes.")),
}
#: The database did not answer: the truth is that nothing was stored.
UNAVAILABLE_MESSAGE = (
    _l("Sorry, the site cannot store letters right now"),
    _l("Our database is not answering, so nothing was stored. Please send your letter again in a few minutes."),
)
UNAVAILABLE_PAGE_MESSAGE = _l(
    "Our database is not answering, so signing does not work right now. Please come back in a few minutes."
)
#: Seconds a client is told to wait (Retry-After) while the database is down.
UNAVAILABLE_RETRY_AFTER = 30
#: At most one traceback this often (seconds): an outage fails every request.
TRACEBACK_INTERVAL = 60
CSRF_MESSAGE = (
    _l("Your form has expired"),
    _l("For your security the form can only be sent from this site, within one visit. "
       "Please go back, reload the page and send your letter again."),
)


def render_error(status: int, title: object, explanation: object) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, explanation=explanation), status


def _language_from_path():
    # When routing itself failed (405, or a 404 before the view), the
    # language prefix was never read; the page still speaks the URL's language.
    if getattr(g, "lang", None) is None and request:
        prefix = request.path.strip("/").split("/", 1)[0]
        if prefix in current_app.config["LANGUAGES"]:
            g.lang = prefix


def handle_http_error(error: HTTPException) -> Response | tuple[str, int]:
    if isinstance(error, SecurityError):
        # A Host outside TRUSTED_HOSTS: no page, since every link on it would
        # be built for that host. Nothing of the request was read.
        log.info("request for an untrusted host refused")
        return Response("Bad Request: this site does not answer to that host name.\n", 400, mimetype="text/plain")
    _language_from_path()
    title, explanation = MESSAGES.get(error.code, (error.name, ""))
    return render_error(error.code, title, explanation)


def handle_csrf_error(error: CSRFError) -> tuple[str, int]:
    log.info("CSRF check failed: %s", error.description)
    return render_error(400, *CSRF_MESSAGE)


def handle_unexpected_error(error: BaseException) -> tuple[str, int]:
    log.exception("unhandled error")
    return render_error(500, *MESSAGES[500])


def is_database_unavailable(error: BaseException) -> bool:
    """True if ``error`` says the database cannot be reached (down, restarting, connection lost)."""
    return (isinstance(error, (OperationalError, InterfaceError))
            or bool(getattr(error, "connection_invalidated", False)))


class TracebackThrottle:
    """Logs each failure in one line, and its traceback at most every ``interval`` seconds.

    An outage fails every request (and every worker poll): a traceback each
    time would bury the log, thousands of lines in seconds.
    """

    def __init__(self, interval: float = TRACEBACK_INTERVAL) -> None:
        self.interval = interval
        self._last: float | None = None

    def error(self, logger: logging.Logger, message: str, *args: Any, error: BaseException) -> None:
        """Log ``message % args`` at ERROR, with ``error``'s traceback if none was logged for ``interval``."""
        now = time.monotonic()
        with_traceback = self._last is None or now - self._last >= self.interval
        if with_traceback:
            self._last = now
        logger.error(message, *args, exc_info=error if with_traceback else None)


def handle_database_error(error: DBAPIError) -> Response | tuple[str, int]:
    """A 503 with Retry-After when the database is down; the form again, with what the supporter typed.

    One log line per failed request, a traceback at most every TRACEBACK_INTERVAL.
    """
    if not is_database_unavailable(error):
        return handle_unexpected_error(error)
    from .extensions import db

    try:
        db.session.rollback()
    except Exception:  # the connection is gone; the session is discarded at teardown anyway
        pass
    throttle = current_app.extensions.setdefault("clamor_db_error_log", TracebackThrottle())
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0][:300]
    throttle.error(log, "database unavailable (%s %s): %s: %s", request.method, request.endpoint,
                   type(error).__name__, detail, error=error)
    _language_from_path()
    signing = request.endpoint in ("public.campaign_page", "public.sign", "public.embed", "public.embed_sign")
    page = _form_again() if signing else None
    if page is None:
        page = render_template("error.html", status=503, title=UNAVAILABLE_MESSAGE[0],
                               explanation=UNAVAILABLE_MESSAGE[1])
    response = current_app.make_response((page, 503))
    response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    response.headers["Cache-Control"] = "no-store"
    return response


def _form_again():
    """The campaign's form filled with the POST's fields (empty on a GET), or None if it cannot be drawn."""
    from .consent import CONSENT_SENTENCE
    from .forms import extra_fields, make_action_form

    state = current_app.extensions["clamor"]
    slug = (request.view_args or {}).get("slug")
    campaign = state.campaigns.get(slug) if slug else state.default_campaign()
    lang = getattr(g, "lang", None)
    if campaign is None or lang not in campaign.languages or not campaign.is_open:
        return None
    posted = request.method == "POST"
    try:
        form = make_action_form(campaign, lang, state.filters["extend_action_form"])()
        return render_template(
            "unavailable.html", campaign=campaign, text=campaign.text(lang), form=form,
            extra_fields=extra_fields(form), consent_sentence=CONSENT_SENTENCE,
            title=UNAVAILABLE_MESSAGE[0], explanation=UNAVAILABLE_MESSAGE[1] if posted else UNAVAILABLE_PAGE_MESSAGE,
        )
    except Exception:
        log.warning("database unavailable: the form could not be drawn again", exc_info=True)
        return None


def init_app(app: Flask) -> None:
    app.register_error_handler(DBAPIError, handle_database_error)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(InternalServerError, handle_unexpected_error)
