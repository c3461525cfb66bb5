"""What supporters see: the campaign page, signing, the thank-you page."""

import logging

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_babel import format_date
from flask_babel import gettext as _
from sqlalchemy import func, select

from .delivery import queue_deliveries
from .extensions import db, limiter
from .forms import extra_fields, make_action_form
from .i18n import best_language, language_name, page_language, remember_language
from .models import Delivery, Signature, utcnow
from .security import client_hash
from .spam import Submission, judge

log = logging.getLogger(__name__)

bp = Blueprint("public", __name__)


def _state():
    return current_app.extensions["clamor"]


def default_campaign():
    """The campaign served at ``/`` and ``/<lang>/``, or None when there is none."""
    return _state().default_campaign()


def _campaign_or_404(slug):
    campaign = _state().campaigns.get(slug) if slug else default_campaign()
    if campaign is None:
        abort(404)
    return campaign


@bp.url_value_preprocessor
def _pull_lang(endpoint, values):
    if values and "lang" in values:
        g.lang = values.pop("lang")
        if g.lang not in current_app.config["LANGUAGES"]:
            g.lang = None
            abort(404)


@bp.url_defaults
def _add_lang(endpoint, values):
    if "lang" not in values and getattr(g, "lang", None) and current_app.url_map.is_endpoint_expecting(endpoint, "lang"):
        values["lang"] = g.lang


@bp.after_request
def _remember_language(response):
    # The language of every campaign page a visitor reads is remembered, so
    # that ``/`` (a bookmark, the short link on a leaflet) brings them back to
    # it: they either followed a link in that language or chose it in the
    # switcher. A page that failed is no choice.
    lang = getattr(g, "lang", None)
    if lang and request.method == "GET" and response.status_code == 200:
        remember_language(response, lang)
    return response


@bp.app_context_processor
def _template_helpers():
    return {"language_name": language_name, "page_language": page_language}


@bp.get("/")
def index():
    """Send the visitor to the default campaign in the best language they accept."""
    campaign = default_campaign()
    if campaign is None:
        abort(404)
    lang = best_language(campaign.languages, campaign.default_language)
    response = redirect(url_for("public.campaign_page", lang=lang, slug=campaign.slug))
    response.headers["Vary"] = "Accept-Language, Cookie"
    return response


def accepted_count(campaign):
    """How many supporters have signed ``campaign`` (letters accepted)."""
    return db.session.scalar(
        select(func.count(Signature.id)).where(Signature.campaign == campaign.slug, Signature.status == "accepted")
    )


@bp.route("/<lang>/", methods=["GET", "POST"], defaults={"slug": None})
@bp.route("/<lang>/<slug>/", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["SUBMIT_RATE_LIMIT"], methods=["POST"])
def campaign_page(slug):
    """GET: the campaign and its form. POST: sign it."""
    campaign = _campaign_or_404(slug)
    if g.lang not in campaign.languages:
        abort(404)
    state = _state()
    form = make_action_form(campaign, g.lang, state.filters["extend_action_form"])()
    error = None
    if request.method == "POST":
        if not campaign.is_open:
            abort(403)
        if form.validate():
            submission = Submission(
                name=form.name.data.strip(),
                email=form.email.data,
                organisation=(form.organisation.data or "").strip(),
                country=form.country.data or "",
                message=form.message.data.replace("\r\n", "\n"),
                opt_in=form.opt_in.data == "yes",
                language=g.lang,
                client_hash=client_hash(current_app.config["SECRET_KEY"], request.remote_addr),
                form=form,
            )
            verdict = judge(submission, campaign, state.filters["check_submission"])
            if verdict is None or verdict.action == "hold":
                _store(submission, campaign, verdict)
                state.wake_worker()
                return redirect(url_for("public.thanks", slug=campaign.slug), code=303)
            error = verdict.reason
        else:
            error = _("Please correct the fields marked below.")
    text = campaign.text(g.lang)
    return render_template(
        "campaign.html",
        campaign=campaign,
        text=text,
        form=form,
        extra_fields=extra_fields(form),
        error=error,
        count=accepted_count(campaign),
    )


def _store(submission, campaign, verdict):
    """Store the signature and one delivery per target in ONE transaction."""
    held = verdict is not None
    signature = Signature(
        campaign=campaign.slug,
        name=submission.name,
        email=submission.email,
        organisation=submission.organisation,
        country=submission.country,
        message=submission.message,
        language=submission.language,
        opt_in=submission.opt_in,
        consented_at=utcnow() if submission.opt_in else None,
        status="held" if held else "accepted",
        status_reason=str(verdict.reason) if held else "",
        client_hash=submission.client_hash,
    )
    queue_deliveries(signature, campaign, current_app.config, status="held" if held else "pending")
    db.session.add(signature)
    db.session.commit()
    log.info("signature %s stored for %s (%s)", signature.id, campaign.slug, signature.status)


@bp.get("/<lang>/<slug>/thanks")
def thanks(slug):
    """The thank-you page: today's date and the counters, formatted for the page's language."""
    campaign = _campaign_or_404(slug)
    if g.lang not in campaign.languages:
        abort(404)
    sent = db.session.scalar(
        select(func.count(Delivery.id))
        .join(Signature)
        .where(Signature.campaign == campaign.slug, Delivery.status == "sent")
    )
    return render_template(
        "thanks.html",
        campaign=campaign,
        text=campaign.text(g.lang),
        count=accepted_count(campaign),
        letters_sent=sent,
        today=format_date(utcnow().date(), format="long"),
        share_url=url_for("public.campaign_page", slug=campaign.slug, _external=True),
    )
