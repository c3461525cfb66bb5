"""The organisers' pages under /admin/: login, dashboard, moderation, supporters, export.

Every view but the login page needs a live admin session; without one the
answer is a redirect to the login page and nothing else, checked in one
``before_request`` so a new view cannot forget it. Sessions, passwords and the
login throttle are :mod:`app.admin_sessions`; the dashboard's figures are
:mod:`app.figures`. Logins are limited per client address here (Flask-Limiter,
keyed by a hash of the address).
"""

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, union_all
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response as BaseResponse
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from . import moderation, states, tally, totals
from .admin_sessions import DUMMY_HASH as _DUMMY_HASH
from .admin_sessions import (  # noqa: F401 (the names app.admin has always had)
    FREE_FAILURES,
    MAX_LOGIN_WAIT,
    PASSWORD_METHOD,
    claim_attempt,
    end_sessions,
    expired_sessions,
    hash_password,
    login_wait,
    session_id_hash,
    session_organiser,
    start_session,
)
from .export import export_query, iter_csv
from .extensions import csrf, db, limiter
from .figures import counted_figures, dashboard_figures, former_targets  # noqa: F401 (counted_figures: tests, bench)
from .forms import PostedForm
from .keys import subkey
from .links import unsubscribe_url
from .models import AdminSession, Delivery, Organiser, Signature, utcnow
from .paging import keyset_page
from .privacy import retention_ends
from .security import client_hash
from .states import SignatureStatus

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf.exempt(bp)


#: The key of Flask's session cookie that holds the random session id.
SESSION_KEY = "admin_session"


class LoginForm(PostedForm):
    # A text field: HTML allows autocomplete="username" (what password managers
    # key a login on) only there, not on type="email" (Nu HTML Checker).
    email = StringField(_l("Email"), validators=[DataRequired()],
                        render_kw={"autocomplete": "username", "inputmode": "email", "spellcheck": "false",
                                   "autocapitalize": "none"})
    password = PasswordField(_l("Password"), validators=[DataRequired()],
                             render_kw={"autocomplete": "current-password"})


def _state():
    return current_app.extensions["clamor"]


def _login_failed(response):
    # Only failed attempts use up the limit; a successful login redirects.
    return response.status_code != 303


def _client_key():
    # Never the address itself: a Redis holding the counters would list who logged in from where.
    return "admin-login:" + client_hash(subkey("client-address"), request.remote_addr)


@bp.before_request
def _require_organiser():
    # The login check comes before the CSRF check (the blueprint is exempt
    # from the automatic one), so a POST without a session is redirected like
    # a GET instead of answering 400.
    if request.endpoint == "admin.login":
        if request.method == "POST":
            csrf.protect()
        return None
    session_id = session.get(SESSION_KEY)
    organiser = session_organiser(session_id) if isinstance(session_id, str) and session_id else None
    if organiser is None:
        session.pop(SESSION_KEY, None)
        return redirect(url_for("admin.login", next=request.full_path if request.method == "GET" else None))
    g.admin_session_hash = session_id_hash(session_id)
    g.organiser = organiser
    if request.method == "POST":
        csrf.protect()
    return None


@bp.after_request
def _no_store(response):
    # Supporters' data must not linger in shared or back-button caches.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _safe_next(target):
    """Only a path inside /admin/ is followed after login (no open redirect)."""
    if target and target.startswith("/admin/") and not target.startswith("//"):
        return target
    return url_for("admin.index")


def _log_in(organiser, password):
    """Open a session for ``organiser``, whose ``password`` was just checked; upgrade an old hash."""
    now = utcnow()
    previous = session.get(SESSION_KEY)
    if isinstance(previous, str):
        end_sessions(AdminSession.id_hash == session_id_hash(previous))
    # Sessions nobody came back to would otherwise stay in the table.
    end_sessions(expired_sessions(now))
    if organiser.password_hash.split("$", 1)[0] != PASSWORD_METHOD:
        organiser.password_hash = hash_password(password)
        log.info("password hash of organiser %s upgraded to %s", organiser.email, PASSWORD_METHOD)
    organiser.failed_logins = 0
    organiser.locked_until = None
    organiser.last_login_at = now
    # A fresh cookie: nothing set before login (a planted id, the old CSRF token) survives it.
    session.clear()
    session[SESSION_KEY] = start_session(organiser)
    db.session.commit()
    log.info("organiser %s logged in", organiser.email)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["ADMIN_LOGIN_RATE_LIMIT"], methods=["POST"], deduct_when=_login_failed,
               key_func=_client_key)
def login() -> BaseResponse | tuple[str, int]:
    """The login form: failed attempts limited per client address, and slowed down per account."""
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        password = form.password.data
        organiser = db.session.scalar(select(Organiser).where(Organiser.email == email))
        if organiser is None:
            check_password_hash(_DUMMY_HASH, password)
            log.warning("failed admin login for %s (no such organiser)", email)
        elif not claim_attempt(organiser):
            # Not checked, but as slow as a check, and answered like a wrong password.
            check_password_hash(_DUMMY_HASH, password)
            log.warning("admin login for %s not checked: the account waits after %s wrong passwords",
                        email, organiser.failed_logins)
        elif check_password_hash(organiser.password_hash, password):
            _log_in(organiser, password)
            return redirect(_safe_next(request.args.get("next")), code=303)
        else:
            log.warning("failed admin login for %s (%s in a row)", email, organiser.failed_logins)
        error = _("Wrong email address or password.")
    elif request.method == "POST":
        error = _("Wrong email address or password.")
    return render_template("admin/login.html", form=form, error=error), 200 if error is None else 401


@bp.post("/logout")
def logout() -> BaseResponse:
    end_sessions(AdminSession.id_hash == g.admin_session_hash)
    db.session.commit()
    log.info("organiser %s logged out", g.organiser.email)
    session.clear()
    return redirect(url_for("admin.login"), code=303)


def _campaign_or_404(slug):
    campaign = _state().campaigns.get(slug)
    if campaign is None:
        abort(404)
    return campaign


@bp.get("/")
def index() -> str:
    """Every campaign with its count, and how many submissions wait for a moderator."""
    campaigns = list(_state().campaigns.values())
    held = dict(db.session.execute(
        select(Signature.campaign, func.count())
        .where(Signature.status == SignatureStatus.HELD)
        .group_by(Signature.campaign)
    ).all())
    counts = {c.slug: tally.accepted(c.slug) for c in campaigns}
    return render_template("admin/index.html", campaigns=campaigns, counts=counts, held=held)


def bar_chart(per_day: Sequence[tuple[str, int]], width: int = 640, height: int = 200) -> dict[str, Any] | None:
    """Geometry of the signatures-per-day chart, drawn as inline SVG by the template.

    One bar per calendar day from the first to the last (days without
    signatures are empty bars); heights are scaled to the busiest day.
    """
    if not per_day:
        return None
    counts = dict(per_day)
    first = datetime.fromisoformat(per_day[0][0]).date()
    last = datetime.fromisoformat(per_day[-1][0]).date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    top = max(counts.values())
    plot_height = height - 30
    # At least two weeks' worth of slots, so one day is a bar, not a wall.
    step = width / max(len(days), 14)
    bars = []
    for i, day in enumerate(days):
        n = counts.get(day.isoformat(), 0)
        h = round(plot_height * n / top, 1)
        bars.append({"x": round(i * step + step * 0.1, 1), "y": round(plot_height - h + 10, 1),
                     "width": round(max(step * 0.8, 1), 1), "height": h, "day": day.isoformat(), "count": n})
    return {"width": width, "height": height, "bars": bars, "top": top, "first": days[0].isoformat(),
            "last": days[-1].isoformat()}


@bp.get("/<slug>/")
def dashboard(slug: str) -> str:
    """How the campaign is doing: letters, signatures per day, countries, languages, targets, retention."""
    campaign = _campaign_or_404(slug)
    figures = dashboard_figures(campaign)
    config = current_app.config
    return render_template(
        "admin/dashboard.html",
        campaign=campaign,
        f=figures,
        chart=bar_chart(figures["per_day"]),
        former_targets=former_targets(campaign),
        retention_days=config["RETENTION_DAYS"],
        retention_ends=retention_ends(campaign, config["RETENTION_DAYS"]),
        confirm=config["CONFIRM_SUPPORTER_EMAIL"],
        confirm_days=config["CONFIRM_EXPIRY_DAYS"],
    )


@bp.post("/<slug>/retry")
def retry_failed(slug: str) -> BaseResponse:
    """Make one target's failed letters due again, with a fresh count of attempts."""
    campaign = _campaign_or_404(slug)
    key = request.form.get("target", "")
    if key not in {t.key for t in campaign.targets}:
        abort(400)
    retried = states.retry(Delivery.campaign == campaign.slug, Delivery.kind == "letter", Delivery.target_key == key)
    db.session.commit()
    log.info("organiser %s retried %s failed letters to %s (%s)", g.organiser.email, retried, key, slug)
    flash(_("%(num)s letters to %(target)s will be tried again.", num=retried, target=key))
    _state().wake_worker()
    return redirect(url_for("admin.dashboard", slug=slug), code=303)


@bp.get("/moderation")
def moderation_page() -> BaseResponse | str:
    """Held submissions, oldest first, with each filter's reason; a page at a time (``?after=ID``, ``?before=ID``).

    A wave of spam a filter holds can leave thousands waiting: the moderator
    gets them ``ADMIN_PAGE_SIZE`` at a time, each page costing what the first does.
    """
    slug = request.args.get("campaign") or None
    before, after = _row_id(request.args.get("before")), _row_id(request.args.get("after"))
    page = keyset_page(moderation.held_query(slug), Signature.id, current_app.config["ADMIN_PAGE_SIZE"],
                       before, after, oldest_first=True)
    if not page.rows and (before is not None or after is not None):
        return redirect(url_for("admin.moderation_page", campaign=slug))
    return render_template("admin/moderation.html", held=page.rows, newer=page.newer, older=page.older,
                           slug=slug, campaigns=_state().campaigns)


@bp.post("/moderation/<int:signature_id>/<any(approve, reject):decision>")
def moderate(signature_id: int, decision: str) -> BaseResponse:
    """Approve (its letters are queued) or reject (its data is deleted) one held submission."""
    try:
        if decision == "approve":
            moderation.approve(signature_id)
            flash(_("Approved: the letters are on their way."))
        else:
            moderation.reject(signature_id)
            flash(_("Rejected and deleted."))
    except LookupError:
        abort(404)
    log.info("organiser %s: %s signature %s", g.organiser.email, decision, signature_id)
    return redirect(url_for("admin.moderation_page"), code=303)


def _row_id(value):
    """An id from the address, or None; any number is clamped to 64 bits (the database would raise beyond)."""
    try:
        return min(max(int(value), 0), 2**63 - 1)
    except (TypeError, ValueError):
        return None


@bp.get("/<slug>/supporters")
def supporters(slug: str) -> BaseResponse | str:
    """Accepted supporters, newest first, a page at a time; ``q``: name, email or organisation starting with it.

    Keyset pagination by id (``?before=ID``: older than ID; ``?after=ID``:
    newer), never OFFSET, so the thousandth page costs what the first does.
    """
    campaign = _campaign_or_404(slug)
    size = current_app.config["ADMIN_PAGE_SIZE"]
    q = (request.args.get("q") or "").strip()
    before, after = _row_id(request.args.get("before")), _row_id(request.args.get("after"))
    query = select(Signature).where(Signature.campaign == slug, Signature.status == SignatureStatus.ACCEPTED)
    if q:
        # A prefix, any case, of the name, the address or the organisation:
        # each a range on its index of lower(column), where "contains"
        # (LIKE '%q%') would read every row. Written as ids from a UNION so
        # that the planner reads those three indexes, not every accepted row
        # in id order.
        low = q.lower()
        high = low + "\U0010ffff"
        matches = union_all(*(
            select(Signature.id).where(Signature.campaign == slug, Signature.status == SignatureStatus.ACCEPTED,
                                       func.lower(column) >= low, func.lower(column) < high)
            for column in (Signature.name, Signature.email, Signature.organisation)
        )).subquery()
        query = select(Signature).where(Signature.id.in_(select(matches.c.id)))
    page = keyset_page(query, Signature.id, size, before, after)
    if not page.rows and (before is not None or after is not None):
        return redirect(url_for("admin.supporters", slug=slug, q=q or None))
    total = totals.figures(slug).get("status", {}).get(SignatureStatus.ACCEPTED, 0) if not q else None
    return render_template("admin/supporters.html", campaign=campaign, rows=page.rows, q=q, total=total,
                           newer=page.newer, older=page.older)


@bp.get("/<slug>/export.csv")
def export(slug: str) -> Response:
    """CSV of accepted supporters (``?opt_in=1``: only those who asked for alerts), streamed."""
    campaign = _campaign_or_404(slug)
    opt_in_only = request.args.get("opt_in") == "1"
    log.info("organiser %s exported %s supporters of %s", g.organiser.email, "opt-in" if opt_in_only else "all", slug)
    name = f"{campaign.slug}-{'opt-in' if opt_in_only else 'supporters'}-{utcnow():%Y%m%d}.csv"
    return Response(
        stream_with_context(iter_csv(export_query(slug, opt_in_only), unsubscribe_url)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# The target buttons' routes and the letters' CSV are on this blueprint, in modules of their own.
from . import admin_letters_csv, admin_targets  # noqa: E402, F401
