"""Error pages: translated, friendly, never a stack trace."""

import logging

from flask import Response, current_app, g, render_template, request
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError

log = logging.getLogger(__name__)

#: status -> (title, explanation) shown to the visitor.
MESSAGES = {
    400: (_l("Something was wrong with that request"), _l("Please go back and try again.")),
    403: (_l("This action is not possible"), _l("This campaign does not accept signatures any more.")),
    404: (_l("Page not found"), _l("There is no page at this address. Check the link, or start from the campaign page.")),
    405: (_l("This action is not possible"), _l("Please go back and try again.")),
    413: (_l("Too much text"), _l("What you sent is too long. Please shorten your message and send it again.")),
    429: (_l("Please wait a moment"), _l("Too many letters were sent from your connection. Please wait a little and try again.")),
    500: (_l("Something went wrong on our side"), _l("Your letter may not have been stored. Please try again in a few minutes.")),
}
CSRF_MESSAGE = (
    _l("Your form has expired"),
    _l("For your security the form can only be sent from this site, within one visit. "
       "Please go back, reload the page and send your letter again."),
)


def render_error(status, title, explanation):
    return render_template("error.html", status=status, title=title, explanation=explanation), status


def _language_from_path():
    # When routing itself failed (405, or a 404 before the view), the
    # language prefix was never read; the page still speaks the URL's language.
    if getattr(g, "lang", None) is None and request:
        prefix = request.path.strip("/").split("/", 1)[0]
        if prefix in current_app.config["LANGUAGES"]:
            g.lang = prefix


def handle_http_error(error):
    if isinstance(error, SecurityError):
        # A Host outside TRUSTED_HOSTS: no page, since every link on it would
        # be built for that host. Nothing of the request was read.
        log.info("request for an untrusted host refused")
        return Response("Bad Request: this site does not answer to that host name.\n", 400, mimetype="text/plain")
    _language_from_path()
    title, explanation = MESSAGES.get(error.code, (error.name, ""))
    return render_error(error.code, title, explanation)


def handle_csrf_error(error):
    log.info("CSRF check failed: %s", error.description)
    return render_error(400, *CSRF_MESSAGE)


def handle_unexpected_error(error):
    log.exception("unhandled error")
    return render_error(500, *MESSAGES[500])


def init_app(app):
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(InternalServerError, handle_unexpected_error)
