"""What supporters see: the campaign page, signing, the thank-you page."""

import logging

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .delivery import queue_deliveries
from .extensions import db, limiter
from .forms import extra_fields, make_action_form
from .i18n import best_language, language_name
from .models import Delivery, Signature, utcnow
from .security import client_hash
from .spam import Submission, judge, normalise_email, spend_tokens

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


@bp.app_context_processor
def _template_helpers():
    return {"language_name": language_name}


@bp.get("/")
def index():
    """Send the visitor to the default campaign in the best language they accept."""
    campaign = default_campaign()
    if campaign is None:
        abort(404)
    lang = best_language(campaign.languages, campaign.default_language)
    response = redirect(url_for("public.campaign_page", lang=lang, slug=campaign.slug))
    response.headers["Vary"] = "Accept-Language"
    return response


def accepted_count(campaign):
    """How many supporters have signed ``campaign`` (letters accepted)."""
    return db.session.scalar(
        select(func.count(Signature.id)).where(Signature.campaign == campaign.slug, Signature.status == "accepted")
    )


def _posted_email():
    # Reading the body here is safe: Werkzeug refuses one larger than
    # MAX_CONTENT_LENGTH with a 413 before parsing it.
    return normalise_email(request.form.get("email", ""))


def _submit_rate_limit():
    return current_app.config["SUBMIT_RATE_LIMIT"]


@bp.route("/<lang>/", methods=["GET", "POST"], defaults={"slug": None})
@bp.route("/<lang>/<slug>/", methods=["GET", "POST"])
# Twice the same rate: once per client address (as the WSGI server sees it;
# see PROXY_FIX_X_FOR), once per supporter address, so that neither a botnet
# signing as one person nor one host signing as many people gets far.
@limiter.limit(_submit_rate_limit, methods=["POST"])
@limiter.limit(
    _submit_rate_limit,
    methods=["POST"],
    # Hashed like client addresses: with Redis, limiter keys outlive the
    # request, and supporters' addresses must not sit there in clear.
    key_func=lambda: "email:" + client_hash(current_app.config["SECRET_KEY"], _posted_email()),
    exempt_when=lambda: not _posted_email(),
)
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
            if verdict is not None and verdict.action == "reject":
                error = verdict.reason
            else:
                try:
                    _store(submission, campaign, verdict, form)
                except IntegrityError:
                    # Another request spent the same one-time token between
                    # our check and our commit: this one is the replay.
                    db.session.rollback()
                    log.info("one-time token already spent; submission refused")
                    error = _("This form was sent already. Please check it and send it again.")
                else:
                    if verdict is None:
                        state.wake_worker()
                    # A dropped submission gets the very same answer as an
                    # accepted one: the response must not tell whether, say,
                    # an address had signed before.
                    return redirect(url_for("public.thanks", slug=campaign.slug), code=303)
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


def _store(submission, campaign, verdict, form):
    """Store the signature, one delivery per target and the spent one-time tokens in ONE transaction.

    ``verdict``: None (accepted), a hold (stored as held, deliveries held) or a
    drop (only the tokens are spent: nothing of the supporter is stored).
    Raises :class:`IntegrityError` when a token was spent concurrently;
    nothing is stored then.
    """
    spend_tokens(form)
    if verdict is not None and verdict.action == "drop":
        db.session.commit()
        log.info("submission for %s dropped: %s", campaign.slug, verdict.reason)
        return
    held = verdict is not None
    if held:
        # Moderators read reasons in the deployment's default language, not
        # in the supporter's.
        with force_locale(current_app.config["BABEL_DEFAULT_LOCALE"]):
            reason = str(verdict.reason)
    signature = Signature(
        campaign=campaign.slug,
        name=submission.name,
        email=submission.email,
        email_key=submission.email_key,
        organisation=submission.organisation,
        country=submission.country,
        message=submission.message,
        language=submission.language,
        opt_in=submission.opt_in,
        consented_at=utcnow() if submission.opt_in else None,
        status="held" if held else "accepted",
        status_reason=reason if held else "",
        client_hash=submission.client_hash,
    )
    queue_deliveries(signature, campaign, current_app.config, status="held" if held else "pending")
    db.session.add(signature)
    db.session.commit()
    log.info("signature %s stored for %s (%s)", signature.id, campaign.slug, signature.status)


@bp.get("/<lang>/<slug>/thanks")
def thanks(slug):
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
        share_url=url_for("public.campaign_page", slug=campaign.slug, _external=True),
    )
