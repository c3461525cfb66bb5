"""What supporters see: the campaign page, signing, thanks, confirmation, unsubscribe,
their letter's status and the privacy statement."""

import logging

from flask import Blueprint, abort, current_app, g, make_response, redirect, render_template, request, session, url_for
from flask_babel import force_locale, format_date
from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from . import tally
from .consent import CONSENT_SENTENCE, consent_version
from .delivery import queue_confirmation, queue_deliveries
from .errors import render_error
from .extensions import csrf, db, limiter
from .forms import extra_fields, make_action_form
from .i18n import best_language, language_name, page_language, remember_language
from .keys import subkey
from .letter_status import StandIn, letter_rows, stand_in, stand_in_rows
from .models import Delivery, Signature, utcnow
from .security import client_hash, client_key
from .spam import Submission, judge, normalise_email, spend_tokens
from .tokens import load_letter, load_signature, make_status_token, make_token

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
    """How many supporters have signed ``campaign`` (letters accepted): one row read, no COUNT."""
    return tally.accepted(campaign.slug)


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
    key_func=lambda: "email:" + client_hash(subkey("rate-limit-email"), _posted_email()),
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
            return render_error(403, _("This campaign is closed"),
                                _("This campaign does not accept signatures any more."))
        if form.validate():
            submission = Submission(
                name=form.name.data.strip(),
                email=form.email.data,
                organisation=(form.organisation.data or "").strip(),
                country=form.country.data or "",
                message=form.message.data.replace("\r\n", "\n"),
                opt_in=form.opt_in.data == "yes",
                language=g.lang,
                client_hash=client_key(),
                form=form,
            )
            verdict = judge(submission, campaign, state.filters["check_submission"])
            if verdict is not None and verdict.action == "reject":
                error = verdict.reason
            else:
                try:
                    letter = _store(submission, campaign, verdict, form)
                except IntegrityError:
                    # Another request spent the same one-time token between
                    # our check and our commit: this one is the replay.
                    db.session.rollback()
                    log.info("one-time token already spent; submission refused")
                    error = _("This form was sent already. Please check it and send it again.")
                else:
                    # The thank-you page links to this supporter's letter, and
                    # only this browser knows which one that is. A dropped
                    # submission gets the very same answer, with a stand-in
                    # letter: nothing may tell whether, say, an address had
                    # signed before.
                    session["letter"] = make_status_token(letter)
                    state.wake_worker()
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
        consent_sentence=CONSENT_SENTENCE,
        privacy_url=campaign.privacy_url or url_for("public.privacy", slug=campaign.slug),
    )


def _store(submission, campaign, verdict, form):
    """Store the signature, its deliveries, its counter change, the spent one-time
    tokens (and the confirmation email) in ONE transaction; return the signature.

    ``verdict``: None (accepted), a hold (stored as held, deliveries held) or a
    drop (only the tokens are spent: nothing of the supporter is stored, and
    a :class:`StandIn` is returned in place of the signature). Raises
    :class:`IntegrityError` when a token was spent concurrently; nothing is
    stored then.
    """
    config = current_app.config
    spend_tokens(form)
    if verdict is not None and verdict.action == "drop":
        letter = stand_in(campaign, verdict, config)
        if letter.status == "accepted":
            # The public counter moves as for a new signer, or it would tell
            # whether the address had signed (see app/tally.py).
            tally.add(campaign.slug, 1)
        if letter.status == "unconfirmed":
            _remind_unconfirmed(submission, campaign, config)
        db.session.commit()
        log.info("submission for %s dropped: %s", campaign.slug, verdict.reason)
        return letter
    held = verdict is not None
    reason = ""
    if held:
        # Moderators read reasons in the deployment's default language, not
        # in the supporter's.
        with force_locale(config["BABEL_DEFAULT_LOCALE"]):
            reason = str(verdict.reason)
    confirm = config["CONFIRM_SUPPORTER_EMAIL"]
    status = "unconfirmed" if confirm else "held" if held else "accepted"
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
        consent_version=consent_version(submission.language) if submission.opt_in else None,
        consent_language=submission.language if submission.opt_in else None,
        consented_at=utcnow() if submission.opt_in else None,
        status=status,
        # Kept while unconfirmed too: a held submission confirmed by its
        # supporter then waits for a moderator.
        status_reason=reason,
        client_hash=submission.client_hash,
    )
    queue_deliveries(signature, campaign, config, status="pending" if status == "accepted" else "held")
    db.session.add(signature)
    db.session.flush()
    if confirm:
        subject, body = _confirmation_email(signature, campaign)
        queue_confirmation(signature, config, subject, body)
    if status == "accepted":
        tally.add(campaign.slug, 1)
    db.session.commit()
    log.info("signature %s stored for %s (%s)", signature.id, campaign.slug, signature.status)
    return signature


def _remind_unconfirmed(submission, campaign, config):
    """Queue the confirmation email again when this address's earlier signature still waits for it.

    Someone who lost the first email signs again and is told that an email is
    on its way: it must be. It goes to that mailbox only, so the page still
    tells the person at the form nothing. Written in the language of the first
    signature, like its links. Not committed.
    """
    earlier = db.session.scalars(
        select(Signature)
        .where(Signature.campaign == campaign.slug, Signature.email_key == submission.email_key,
               Signature.status == "unconfirmed")
        .order_by(Signature.id.desc()).limit(1)
    ).first()
    if earlier is not None:
        with force_locale(earlier.language):
            queue_confirmation(earlier, config, *_confirmation_email(earlier, campaign))
        log.info("confirmation email queued again for signature %s", earlier.id)


def _confirmation_email(signature, campaign):
    """(subject, body) of the confirmation email, in the request's (the supporter's) language."""
    text = campaign.text(signature.language)
    subject = _("Please confirm your letter: %(title)s", title=text.short_name)
    body = render_template(
        "email/confirm.txt",
        signature=signature,
        text=text,
        days=current_app.config["CONFIRM_EXPIRY_DAYS"],
        confirm_url=url_for("public.confirm", lang=signature.language, token=make_token(signature, "confirm"), _external=True),
        status_url=url_for("public.letter_status", lang=signature.language, token=make_status_token(signature), _external=True),
    )
    return subject, body


def _campaign_in_language(slug):
    campaign = _campaign_or_404(slug)
    if g.lang not in campaign.languages:
        abort(404)
    return campaign


@bp.get("/<lang>/<slug>/thanks")
def thanks(slug):
    """Thanks, the counter, where to share, and a link to this supporter's letter."""
    campaign = _campaign_in_language(slug)
    letter = load_letter(session.get("letter", ""))
    if letter is not None and letter.campaign != campaign.slug:
        letter = None
    return render_template(
        "thanks.html",
        campaign=campaign,
        text=campaign.text(g.lang),
        count=accepted_count(campaign),
        letter=letter,
        status_url=url_for("public.letter_status", token=session["letter"]) if letter else None,
        today=format_date(utcnow().date(), format="long"),
        share_url=url_for("public.campaign_page", slug=campaign.slug, _external=True),
    )


@bp.get("/<lang>/<slug>/privacy")
def privacy(slug):
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


@bp.route("/<lang>/confirm/<token>", methods=["GET", "POST"])
def confirm(token):
    """GET: a page with a button. POST (the button): confirm, and let the letters go.

    A GET never confirms: mail scanners fetch every link in an email.
    """
    signature, campaign = _signature_or_404(token, "confirm")
    confirmed_now = False
    if request.method == "POST" and signature.status == "unconfirmed":
        # Confirmation does not skip moderation: a held submission stays held.
        if signature.status_reason:
            signature.status = "held"
        else:
            signature.status = "accepted"
            db.session.execute(
                update(Delivery)
                .where(Delivery.signature_id == signature.id, Delivery.kind == "letter", Delivery.status == "held")
                .values(status="pending", next_attempt_at=utcnow())
            )
            tally.add(signature.campaign, 1)
        db.session.commit()
        log.info("signature %s confirmed (%s)", signature.id, signature.status)
        confirmed_now = True
        _state().wake_worker()
    return _private(render_template(
        "confirm.html",
        campaign=campaign,
        text=campaign.text(g.lang),
        signature=signature,
        confirmed_now=confirmed_now,
        status_url=url_for("public.letter_status", token=make_status_token(signature)),
    ))


@bp.route("/<lang>/unsubscribe/<token>", methods=["GET", "POST"])
@csrf.exempt
def unsubscribe(token):
    """GET: a page with a button. POST: withdraw consent to future alerts.

    The POST needs no CSRF token, because the signed link is the secret, and
    mail clients' one-click unsubscribe (RFC 8058: ``List-Unsubscribe=One-Click``
    posted to this URL) cannot send one.
    """
    signature, campaign = _signature_or_404(token, "unsubscribe")
    done = False
    if request.method == "POST":
        if signature.opt_in:
            signature.opt_in = False
            signature.consented_at = None
            db.session.commit()
            log.info("signature %s withdrew consent to alerts", signature.id)
        done = True
    return _private(render_template(
        "unsubscribe.html",
        campaign=campaign,
        text=campaign.text(g.lang),
        signature=signature,
        done=done or not signature.opt_in,
    ))


@bp.get("/<lang>/letter/<token>")
def letter_status(token):
    """Where this supporter's letter is, per target: queued, sent or failed."""
    letter = load_letter(token)
    campaign = _state().campaigns.get(letter.campaign) if letter is not None else None
    if campaign is None:
        abort(404)
    if isinstance(letter, StandIn):
        rows = stand_in_rows(letter, campaign, current_app.config)
        if rows is None:
            abort(404)
    else:
        rows = letter_rows(letter, campaign)
    return _private(render_template(
        "letter_status.html", campaign=campaign, text=campaign.text(g.lang), letter=letter, rows=rows,
    ))
