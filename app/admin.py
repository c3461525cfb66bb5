"""The organisers' pages under /admin/: login, dashboard, moderation, supporters, export.

Every view but the login page needs a live admin session; without one the
answer is a redirect to the login page and nothing else, checked in one
``before_request`` so a new view cannot forget it.

Sessions live on the server (:class:`app.models.AdminSession`): the browser's
cookie holds only a random id, and a session ends, whatever the reason
(logout, ``clamor admin remove`` / ``logout-all``, idle for
``ADMIN_SESSION_IDLE_MINUTES``, older than ``ADMIN_SESSION_MAX_HOURS``), by
:func:`end_sessions` deleting its row. A copied cookie dies with it.

Logins are limited per client address (Flask-Limiter, keyed by a hash of the
address) and slowed down per account: after five wrong passwords in a row each
further one makes the account wait longer before another attempt is checked
(:func:`login_wait`), so that a stranger can slow an organiser down but not
lock them out for long, nor guess quickly.
"""

import hashlib
import logging
import secrets
from datetime import datetime, time, timedelta

from flask import (Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request, session,
                   stream_with_context, url_for)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, func, or_, select, text, union_all, update
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired

from . import moderation, tally, totals
from .export import export_query, iter_csv
from .extensions import csrf, db, limiter
from .forms import PostedForm
from .keys import subkey
from .models import LAST_ERROR_WHERE, AdminSession, Delivery, Organiser, Signature, utcnow
from .privacy import retention_ends
from .links import unsubscribe_url
from .security import client_hash

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")
csrf.exempt(bp)

#: How organisers' passwords are hashed (werkzeug's method string): scrypt at
#: the cost OWASP recommends, N=2**17, r=8, p=1 (128 MiB, a few tenths of a
#: second). A stored hash with other parameters is replaced at the next login.
PASSWORD_METHOD = "scrypt:131072:8:1"

#: A werkzeug hash of nothing anyone types, with the parameters of a real one,
#: checked when no password is: a wrong address (or an account that must wait)
#: takes as long as a wrong password.
_DUMMY_HASH = PASSWORD_METHOD + "$clamor$" + "0" * 128

#: Wrong passwords in a row an account may have before each further one makes it wait.
FREE_FAILURES = 5
#: The longest wait (seconds) an account is made to take between two checked attempts.
MAX_LOGIN_WAIT = 300

#: The key of Flask's session cookie that holds the random session id.
SESSION_KEY = "admin_session"

#: last_seen_at is written at most this often, not on every request.
_SEEN_EVERY = timedelta(minutes=1)


class LoginForm(PostedForm):
    email = EmailField(_l("Email"), validators=[DataRequired()], render_kw={"autocomplete": "username"})
    password = PasswordField(_l("Password"), validators=[DataRequired()],
                             render_kw={"autocomplete": "current-password"})


def _state():
    return current_app.extensions["clamor"]


def hash_password(password):
    """The hash to store for ``password`` (:data:`PASSWORD_METHOD`)."""
    return generate_password_hash(password, method=PASSWORD_METHOD)


def login_wait(failures):
    """Seconds an account waits after its ``failures``-th wrong password in a row.

    0 for the first :data:`FREE_FAILURES`; then 1 (the 6th), 2, 4, 8 … up to
    :data:`MAX_LOGIN_WAIT`.
    """
    if failures <= FREE_FAILURES:
        return 0
    return min(2 ** min(failures - FREE_FAILURES - 1, 16), MAX_LOGIN_WAIT)


def _hash_id(session_id):
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(organiser):
    """Store a new session for ``organiser``; returns the random id for the cookie (the caller commits)."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(AdminSession(id_hash=_hash_id(session_id), organiser_id=organiser.id, created_at=now,
                                last_seen_at=now))
    return session_id


def end_sessions(*conditions):
    """End every session matching ``conditions`` by deleting its row; returns how many (the caller commits).

    The only way a session ends: logout, removing an organiser, ``logout-all``
    and expiry all come here.
    """
    if not conditions:
        raise TypeError("end_sessions() needs a condition; it would end every session")
    result = db.session.execute(delete(AdminSession).where(*conditions),
                                execution_options={"synchronize_session": False})
    return result.rowcount


def _limits(now):
    """(oldest last_seen_at, oldest created_at) a session may have at ``now`` and still be live."""
    config = current_app.config
    return (now - timedelta(minutes=config["ADMIN_SESSION_IDLE_MINUTES"]),
            now - timedelta(hours=config["ADMIN_SESSION_MAX_HOURS"]))


def expired_sessions(now=None):
    """SQL condition: the sessions idle too long or too old at ``now``."""
    idle, oldest = _limits(now or utcnow())
    return or_(AdminSession.last_seen_at < idle, AdminSession.created_at < oldest)


def session_organiser(session_id):
    """The organiser whose live session has the cookie id ``session_id``, or None.

    A session found expired is ended here. Its ``last_seen_at`` moves on when
    it is a minute old or more, so a page view rarely writes.
    """
    id_hash = _hash_id(session_id)
    record = db.session.get(AdminSession, id_hash)
    if record is None:
        return None
    organiser = record.organiser
    now = utcnow()
    idle, oldest = _limits(now)
    if record.last_seen_at < idle or record.created_at < oldest:
        log.info("session of organiser %s expired", organiser.email)
        end_sessions(AdminSession.id_hash == id_hash)
        db.session.commit()
        return None
    if now - record.last_seen_at >= _SEEN_EVERY:
        # A statement, not the ORM: a logout in another tab may have deleted the row meanwhile.
        db.session.execute(update(AdminSession).where(AdminSession.id_hash == id_hash).values(last_seen_at=now),
                           execution_options={"synchronize_session": False})
        db.session.commit()
    return organiser


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
    g.admin_session_hash = _hash_id(session_id)
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


def _claim_attempt(organiser):
    """Count this attempt as a wrong password before it is checked; False if the account must wait.

    Counting first, with a compare-and-set on the count, means that attempts
    sent in parallel cannot all be checked in the moment between reading the
    count and writing it: the ones that lose the race are refused like a
    waiting account. A correct password resets the count afterwards.
    """
    now = utcnow()
    failures = organiser.failed_logins + 1
    wait = login_wait(failures)
    claimed = db.session.execute(
        update(Organiser)
        .where(Organiser.id == organiser.id, Organiser.failed_logins == organiser.failed_logins,
               or_(Organiser.locked_until.is_(None), Organiser.locked_until <= now))
        .values(failed_logins=failures, locked_until=now + timedelta(seconds=wait) if wait else None),
        execution_options={"synchronize_session": False},
    ).rowcount == 1
    db.session.commit()
    return claimed


def _log_in(organiser, password):
    """Open a session for ``organiser``, whose ``password`` was just checked; upgrade an old hash."""
    now = utcnow()
    previous = session.get(SESSION_KEY)
    if isinstance(previous, str):
        end_sessions(AdminSession.id_hash == _hash_id(previous))
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
def login():
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
        elif not _claim_attempt(organiser):
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
def logout():
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
def index():
    """Every campaign with its count, and how many submissions wait for a moderator."""
    campaigns = list(_state().campaigns.values())
    held = dict(db.session.execute(
        select(Signature.campaign, func.count()).where(Signature.status == "held").group_by(Signature.campaign)
    ).all())
    return render_template("admin/index.html", campaigns=campaigns, counts={c.slug: tally.accepted(c.slug) for c in campaigns},
                           held=held)


def dashboard_figures(campaign, now=None):
    """Every figure the dashboard shows for ``campaign``, from the running totals (:mod:`app.totals`).

    The same numbers as :func:`counted_figures`, in a few indexed reads at
    any size.
    """
    now = now or utcnow()
    found = totals.figures(campaign.slug)

    def ranked(name):
        return sorted(found.get(name, {}).items(), key=lambda item: (-item[1], item[0]))

    status = found.get("status", {})
    targets = []
    for target in campaign.targets:
        letters = {name.removeprefix("letters:"): keys[target.key]
                   for name, keys in found.items() if name.startswith("letters:") and target.key in keys}
        targets.append({
            "target": target,
            "sent": letters.get("sent", 0),
            "queued": letters.get("queued", 0),
            "held": letters.get("held", 0),
            "failed": letters.get("failed", 0),
            "last_error": _last_error(campaign, target) if letters.get("failed") or letters.get("queued") else "",
        })
    return {
        "signatures": status.get("accepted", 0),
        "counter": tally.accepted(campaign.slug),
        "sent_total": sum(found.get("letters:sent", {}).values()),
        "sent_today": found.get("sent_on", {}).get(now.date().isoformat(), 0),
        "per_day": sorted(found.get("day", {}).items()),
        "by_country": ranked("country"),
        "by_language": ranked("language"),
        "opt_ins": found.get("opt_in", {}).get("yes", 0),
        "held": status.get("held", 0),
        "unconfirmed": status.get("unconfirmed", 0),
        "targets": targets,
    }


def _last_error(campaign, target):
    """The newest error of a failed or waiting letter to ``target`` (partial index ix_delivery_last_error)."""
    return db.session.scalar(
        select(Delivery.last_error)
        .where(Delivery.campaign == campaign.slug, Delivery.target_key == target.key, text(LAST_ERROR_WHERE),
               Delivery.kind == "letter")
        .order_by(Delivery.id.desc()).limit(1)
    ) or ""


def counted_figures(campaign, now=None):
    """The dashboard's figures counted from the rows: what the running totals must equal (tests, checks).

    Scans every signature and letter of the campaign: seconds at a million.
    """
    now = now or utcnow()
    today = datetime.combine(now.date(), time())
    letters = select(func.count(Delivery.id)).where(
        Delivery.campaign == campaign.slug, Delivery.kind == "letter", Delivery.status == "sent"
    )
    accepted = (Signature.campaign == campaign.slug) & (Signature.status == "accepted")
    day = func.date(Signature.created_at)
    per_day = [(str(d), n) for d, n in db.session.execute(
        select(day, func.count()).where(accepted).group_by(day).order_by(day)
    ).all()]

    def grouped(column):
        return db.session.execute(
            select(column, func.count()).where(accepted).group_by(column).order_by(func.count().desc(), column)
        ).all()

    by_status = db.session.execute(
        select(Delivery.target_key, Delivery.status, func.count())
        .where(Delivery.campaign == campaign.slug, Delivery.kind == "letter")
        .group_by(Delivery.target_key, Delivery.status)
    ).all()
    targets = []
    for target in campaign.targets:
        statuses = {status: n for key, status, n in by_status if key == target.key}
        last_error = db.session.scalar(
            select(Delivery.last_error)
            .where(Delivery.campaign == campaign.slug, Delivery.kind == "letter", Delivery.target_key == target.key,
                   Delivery.status.in_(("failed", "pending")), Delivery.last_error != "")
            .order_by(Delivery.id.desc()).limit(1)
        )
        targets.append({
            "target": target,
            "sent": statuses.get("sent", 0),
            "queued": sum(statuses.get(s, 0) for s in ("pending", "sending")),
            "held": statuses.get("held", 0),
            "failed": statuses.get("failed", 0),
            "last_error": last_error or "",
        })
    signatures = db.session.scalar(select(func.count(Signature.id)).where(accepted))
    return {
        "signatures": signatures,
        "counter": tally.accepted(campaign.slug),
        "sent_total": db.session.scalar(letters),
        "sent_today": db.session.scalar(letters.where(Delivery.sent_at >= today)),
        "per_day": per_day,
        "by_country": grouped(Signature.country),
        "by_language": grouped(Signature.language),
        "opt_ins": db.session.scalar(select(func.count(Signature.id)).where(accepted, Signature.opt_in.is_(True))),
        "held": db.session.scalar(select(func.count(Signature.id)).where(
            Signature.campaign == campaign.slug, Signature.status == "held")),
        "unconfirmed": db.session.scalar(select(func.count(Signature.id)).where(
            Signature.campaign == campaign.slug, Signature.status == "unconfirmed")),
        "targets": targets,
    }


def bar_chart(per_day, width=640, height=200):
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
def dashboard(slug):
    """How the campaign is doing: letters, signatures per day, countries, languages, targets, retention."""
    campaign = _campaign_or_404(slug)
    figures = dashboard_figures(campaign)
    config = current_app.config
    return render_template(
        "admin/dashboard.html",
        campaign=campaign,
        f=figures,
        chart=bar_chart(figures["per_day"]),
        retention_days=config["RETENTION_DAYS"],
        retention_ends=retention_ends(campaign, config["RETENTION_DAYS"]),
        confirm=config["CONFIRM_SUPPORTER_EMAIL"],
        confirm_days=config["CONFIRM_EXPIRY_DAYS"],
    )


@bp.post("/<slug>/retry")
def retry_failed(slug):
    """Make one target's failed letters due again, with a fresh count of attempts."""
    campaign = _campaign_or_404(slug)
    key = request.form.get("target", "")
    if key not in {t.key for t in campaign.targets}:
        abort(400)
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.campaign == campaign.slug, Delivery.kind == "letter", Delivery.target_key == key,
               Delivery.status == "failed")
        .values(status="pending", attempts=0, next_attempt_at=utcnow(), lease_until=None),
        execution_options={"synchronize_session": False},
    )
    db.session.commit()
    log.info("organiser %s retried %s failed letters to %s (%s)", g.organiser.email, result.rowcount, key, slug)
    flash(_("%(num)s letters to %(target)s will be tried again.", num=result.rowcount, target=key))
    _state().wake_worker()
    return redirect(url_for("admin.dashboard", slug=slug), code=303)


@bp.get("/moderation")
def moderation_page():
    """Held submissions, oldest first, with each filter's reason."""
    return render_template("admin/moderation.html", held=moderation.held_signatures(request.args.get("campaign")),
                           campaigns=_state().campaigns)


@bp.post("/moderation/<int:signature_id>/<any(approve, reject):decision>")
def moderate(signature_id, decision):
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
def supporters(slug):
    """Accepted supporters, newest first, a page at a time; ``q``: name, email or organisation starting with it.

    Keyset pagination by id (``?before=ID``: older than ID; ``?after=ID``:
    newer), never OFFSET, so the thousandth page costs what the first does.
    """
    campaign = _campaign_or_404(slug)
    size = current_app.config["ADMIN_PAGE_SIZE"]
    q = (request.args.get("q") or "").strip()
    before, after = _row_id(request.args.get("before")), _row_id(request.args.get("after"))
    query = select(Signature).where(Signature.campaign == slug, Signature.status == "accepted")
    if q:
        # A prefix, any case, of the name, the address or the organisation:
        # each a range on its index of lower(column), where "contains"
        # (LIKE '%q%') would read every row. Written as ids from a UNION so
        # that the planner reads those three indexes, not every accepted row
        # in id order.
        low = q.lower()
        high = low + "\U0010ffff"
        matches = union_all(*(
            select(Signature.id).where(Signature.campaign == slug, Signature.status == "accepted",
                                       func.lower(column) >= low, func.lower(column) < high)
            for column in (Signature.name, Signature.email, Signature.organisation)
        )).subquery()
        query = select(Signature).where(Signature.id.in_(select(matches.c.id)))
    if after is not None:
        # The page just newer than ``after``: the oldest ones above it, shown newest first.
        rows = db.session.scalars(query.where(Signature.id > after).order_by(Signature.id).limit(size + 1)).all()
        newer = len(rows) > size
        rows = rows[:size][::-1]
        older = True
    else:
        if before is not None:
            query = query.where(Signature.id < before)
        rows = db.session.scalars(query.order_by(Signature.id.desc()).limit(size + 1)).all()
        older = len(rows) > size
        rows = rows[:size]
        newer = before is not None
    if not rows and (before is not None or after is not None):
        return redirect(url_for("admin.supporters", slug=slug, q=q or None))
    total = totals.figures(slug).get("status", {}).get("accepted", 0) if not q else None
    return render_template("admin/supporters.html", campaign=campaign, rows=rows, q=q, total=total,
                           newer=newer and rows[0].id, older=older and rows[-1].id)


@bp.get("/<slug>/export.csv")
def export(slug):
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
