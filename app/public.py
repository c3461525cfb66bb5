"""What supporters see: the campaign page, signing, thanks, confirmation, unsubscribe,
their letter's status and the privacy statement."""

import logging
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Blueprint, Response, abort, current_app, g, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import format_date
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response as BaseResponse

from . import tally
from .errors import render_error
from .extensions import csrf, db, limiter
from .forms import make_action_form
from .i18n import best_language, register_language_urls
from .keys import subkey
from .letter_status import letter_rows
from .links import external_url
from .models import Signature, utcnow
from .pages import page_cache, render_full
from .security import SessionInterface, check_embed_origins, client_hash, client_key
from .signing import confirm_signature, store_signature, withdraw_consent
from .spam import Submission, form_sent_already, judge, normalise_email
from .target_choice import chosen_targets

if TYPE_CHECKING:
    from .campaigns import Campaign
from .tokens import load_signature, make_token

log = logging.getLogger(__name__)

bp = Blueprint("public", __name__)


def _setup(state):
    app = state.app
    try:
        check_embed_origins(app.config.get("EMBED_ORIGINS", []))
    except ValueError as exc:
        from . import ConfigError

        raise ConfigError(str(exc)) from None
    app.session_interface = SessionInterface()


bp.record_once(_setup)

#: The routes meant to be shown in another site's <iframe> (see EMBED_ORIGINS).
EMBED_ENDPOINTS = {"public.embed", "public.embed_sign", "public.embed_thanks"}


@bp.url_value_preprocessor
def _mark_embed(endpoint, values):
    # Set before any check that may answer instead of the view (CSRF, rate
    # limits, an unknown language), so that its error page shows in the frame too.
    g.embed = endpoint in EMBED_ENDPOINTS


# Before the routes below: they use the converter.
register_language_urls(bp)

#: Paths that tell robots to stay away: behind a signed link (one supporter's
#: letter, confirmation, unsubscribe) or the organisers' pages.
ROBOTS_DISALLOW = ("letter", "confirm", "unsubscribe")


def _state():
    return current_app.extensions["clamor"]


def default_campaign() -> "Campaign | None":
    """The campaign served at ``/`` and ``/<lang:lang>/``, or None when there is none."""
    return _state().default_campaign()


def _campaign_or_404(slug):
    campaign = _state().campaigns.get(slug) if slug else default_campaign()
    if campaign is None:
        abort(404)
    return campaign


@bp.get("/favicon.ico")
def favicon() -> Response:
    """The site's icon (app/static/favicon.ico), cached for a day."""
    response = Response(_static_bytes(current_app.static_folder, "favicon.ico"), mimetype="image/vnd.microsoft.icon")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@lru_cache(maxsize=4)
def _static_bytes(folder, name):
    return (Path(folder) / name).read_bytes()


@bp.get("/robots.txt")
def robots() -> Response:
    """Crawlers may read campaign pages, not the admin pages nor the pages behind a supporter's link."""
    lines = ["User-agent: *", "Disallow: /admin/"]
    for lang in current_app.config["LANGUAGES"]:
        lines += [f"Disallow: /{lang}/{page}/" for page in ROBOTS_DISALLOW]
    response = Response("\n".join(lines) + "\n", mimetype="text/plain")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.get("/")
def index() -> BaseResponse:
    """Send the visitor to the default campaign in the best language they accept."""
    campaign = default_campaign()
    if campaign is None:
        abort(404)
    lang = best_language(campaign.languages, campaign.default_language)
    response = redirect(url_for("public.campaign_page", lang=lang, slug=campaign.slug))
    response.headers["Vary"] = "Accept-Language, Cookie"
    return response


def accepted_count(campaign: "Campaign") -> int:
    """How many supporters have signed ``campaign`` (letters accepted): one row read, no COUNT."""
    return tally.accepted(campaign.slug)


def _posted_email():
    # Reading the body here is safe: Werkzeug refuses one larger than
    # MAX_CONTENT_LENGTH with a 413 before parsing it.
    return normalise_email(request.form.get("email", ""))


def _submit_rate_limit():
    return current_app.config["SUBMIT_RATE_LIMIT"]


@bp.get("/<lang:lang>/", defaults={"slug": None})
@bp.get("/<lang:lang>/<slug>/")
def campaign_page(slug: str | None) -> ResponseReturnValue:
    """The campaign and its form (the cached page, app/pages.py). Its form posts to :func:`sign`, the same URL."""
    return _campaign_page(slug, embed=False)


def _sign_limits(view):
    # Twice the same rate: once per client address (as the WSGI server sees it;
    # see PROXY_FIX_X_FOR), once per supporter address, so that neither a botnet
    # signing as one person nor one host signing as many people gets far.
    # Only on the POST routes: a page view goes through no limiter at all.
    # Shared by the page's and the embed's form: one budget, whichever posts.
    view = limiter.shared_limit(
        _submit_rate_limit,
        scope="sign-email",
        # Hashed like client addresses: with Redis, limiter keys outlive the
        # request, and supporters' addresses must not sit there in clear.
        key_func=lambda: "email:" + client_hash(subkey("rate-limit-email"), _posted_email()),
        exempt_when=lambda: not _posted_email(),
    )(view)
    return limiter.shared_limit(_submit_rate_limit, scope="sign")(view)


@bp.post("/<lang:lang>/", defaults={"slug": None})
@bp.post("/<lang:lang>/<slug>/")
@_sign_limits
def sign(slug: str | None) -> ResponseReturnValue:
    """Sign the campaign: the form of :func:`campaign_page`, posted."""
    return _campaign_page(slug, embed=False)


def _campaign_page(slug, embed):
    campaign = _campaign_or_404(slug)
    if g.lang not in campaign.languages:
        abort(404)
    if request.method == "GET":
        # The language menu links to this same route (with or without the
        # slug), so the two routes are two cached pages.
        return page_cache().page(campaign, g.lang, slug is None, embed=embed)
    state = _state()
    form = make_action_form(campaign, g.lang, state.filters["extend_action_form"])()
    error = None
    if not campaign.is_open:
        return render_error(403, _("This campaign is closed"),
                            _("This campaign does not accept signatures any more."))
    if form.validate():
        submission = _submission(form, campaign)
        verdict = judge(submission, campaign, state.filters["check_submission"])
        if verdict is not None and verdict.action == "reject":
            error = verdict.reason
        else:
            try:
                store_signature(submission, campaign, verdict, form)
            except IntegrityError:
                # Another request spent the same one-time token between
                # our check and our commit: this one is the replay.
                db.session.rollback()
                if form_sent_already(form):
                    return _sent_again(campaign, embed)
                log.info("one-time token already spent; submission refused")
                error = _("This form was sent already. Please check it and send it again.")
            else:
                page_cache().count_changed(campaign.slug)
                # The same answer whatever happened: the link to the
                # letter went to the mailbox (see app/signing.py).
                state.wake_worker()
                return _thanks_redirect(campaign, embed)
    elif form_sent_already(form):
        return _sent_again(campaign, embed)
    else:
        error = _("Please correct the fields marked below.")
    return render_full(campaign, g.lang, form, error=error, embed=embed)


def _submission(form, campaign):
    """The validated ``form``, cleaned, as spam filters and :func:`app.signing.store_signature` take it."""
    return Submission(
        name=form.name.data.strip(),
        email=form.email.data,
        organisation=(form.organisation.data or "").strip(),
        country=form.country.data or "",
        message=form.message.data.replace("\r\n", "\n"),
        opt_in=form.opt_in.data == "yes",
        language=g.lang,
        client_hash=client_key(),
        form=form,
        targets=chosen_targets(campaign, form),
    )


def _thanks_redirect(campaign, embed):
    thanks = "public.embed_thanks" if embed else "public.thanks"
    return redirect(url_for(thanks, slug=campaign.slug), code=303)


def _sent_again(campaign, embed):
    """The answer to the very form a stored submission was sent with (a double click on Send): the first answer."""
    log.info("the same form sent again; answered as the first time, nothing stored")
    return _thanks_redirect(campaign, embed)


@bp.get("/<lang:lang>/<slug>/embed")
def embed(slug: str) -> ResponseReturnValue:
    """The campaign page without the site's menus, for an <iframe> on a site in EMBED_ORIGINS.

    Its form posts to :func:`embed_sign` (the same URL), and a signature leads
    to the embedded thank-you page, so the supporter never leaves the frame.
    """
    return _campaign_page(slug, embed=True)


@bp.post("/<lang:lang>/<slug>/embed")
@_sign_limits
def embed_sign(slug: str) -> ResponseReturnValue:
    """Sign from inside the frame."""
    return _campaign_page(slug, embed=True)


def _campaign_in_language(slug):
    campaign = _campaign_or_404(slug)
    if g.lang not in campaign.languages:
        abort(404)
    return campaign


@bp.get("/<lang:lang>/<slug>/thanks")
def thanks(slug: str) -> str:
    """Thanks, what goes to whom, the counter, where to share. The same page for everyone."""
    return _thanks(slug, embed=False)


@bp.get("/<lang:lang>/<slug>/embed/thanks")
def embed_thanks(slug: str) -> str:
    """The thank-you page inside the frame (see :func:`embed`)."""
    return _thanks(slug, embed=True)


def _thanks(slug, embed):
    campaign = _campaign_in_language(slug)
    config = current_app.config
    return render_template(
        "thanks.html",
        campaign=campaign,
        text=campaign.text(g.lang),
        count=accepted_count(campaign),
        confirm=config["CONFIRM_SUPPORTER_EMAIL"],
        receipt=config["SEND_RECEIPT"],
        today=format_date(utcnow().date(), format="long"),
        share_url=external_url("public.campaign_page", lang=g.lang, slug=campaign.slug),
        embed=embed,
    )


@bp.get("/<lang:lang>/<slug>/privacy")
def privacy(slug: str) -> BaseResponse | str:
    """The campaign's privacy statement: its own text, or the default one."""
    campaign = _campaign_in_language(slug)
    if campaign.privacy_url:
        return redirect(campaign.privacy_url)
    return render_template(
        "privacy.html",
        campaign=campaign,
        text=campaign.text(g.lang),
        retention_days=current_app.config["RETENTION_DAYS"],
        confirm_days=current_app.config["CONFIRM_EXPIRY_DAYS"],
    )


def _signature_or_404(token, purpose):
    signature = load_signature(token, purpose)
    if signature is None:
        abort(404)
    campaign = _state().campaigns.get(signature.campaign)
    if campaign is None:
        abort(404)
    return signature, campaign


def _private(page):
    # Pages behind a signed link: not for search engines or shared caches.
    response = make_response(page)
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/<lang:lang>/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Response:
    """GET: a page with a button. POST (the button): confirm, and let the letters go.

    A GET never confirms: mail scanners fetch every link in an email.
    """
    signature, campaign = _signature_or_404(token, "confirm")
    confirmed_now = False
    if request.method == "POST":
        signature_id, slug = signature.id, signature.campaign
        confirmed_now = confirm_signature(signature)
        if confirmed_now:
            page_cache().count_changed(slug)
            _state().wake_worker()
        elif db.session.get(Signature, signature_id, populate_existing=True) is None:
            # Removed since it was read (clamor purge of an expired confirmation): as an unknown link.
            abort(404)
    return _private(render_template(
        "confirm.html",
        campaign=campaign,
        text=campaign.text(g.lang),
        signature=signature,
        confirmed_now=confirmed_now,
        status_url=url_for("public.letter_status", token=make_token(signature, "status")),
    ))


@bp.route("/<lang:lang>/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt
def unsubscribe(token: str) -> Response:
    """GET: a page with a button. POST: withdraw consent to future alerts.

    The POST needs no CSRF token, because the signed link is the secret, and
    mail clients' one-click unsubscribe (RFC 8058: ``List-Unsubscribe=One-Click``
    posted to this URL) cannot send one.
    """
    signature, campaign = _signature_or_404(token, "unsubscribe")
    done = False
    if request.method == "POST":
        withdraw_consent(signature)
        done = True
    return _private(render_template(
        "unsubscribe.html",
        campaign=campaign,
        text=campaign.text(g.lang),
        signature=signature,
        done=done or not signature.opt_in,
    ))


@bp.get("/<lang:lang>/letter/<token>")
def letter_status(token: str) -> Response:
    """The supporter's own page: a copy of their letter, and where it is per target."""
    signature, campaign = _signature_or_404(token, "status")
    return _private(render_template(
        "letter_status.html", campaign=campaign, text=campaign.text(g.lang), signature=signature,
        rows=letter_rows(signature, campaign),
    ))
