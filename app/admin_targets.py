"""The dashboard's buttons for one target's letters: resume a suspended target, reroute or cancel its letters.

The same moves as ``clamor targets resume|reroute|cancel`` (:mod:`app.cli.targets`),
as POST forms on the admin blueprint: its ``before_request`` checks the
organiser's session and the CSRF token (400 without it) before any of these runs.
"""

import logging

from flask import abort, flash, g, redirect, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from . import states
from .admin import _campaign_or_404, _state, bp
from .extensions import db
from .figures import former_targets

log = logging.getLogger(__name__)


def _target_of(campaign, field):
    """The campaign's target named by the form's ``field``, or 400."""
    target = campaign.target(request.form.get(field, ""))
    if target is None:
        abort(400)
    return target


def _waiting_address(campaign):
    """The form's ``target``: a target of the campaign, or an address its file no longer lists that has letters
    waiting (:func:`app.figures.former_targets`); else 400."""
    key = request.form.get("target", "")
    if key in {target.key for target in campaign.targets} | {row["key"] for row in former_targets(campaign)}:
        return key
    abort(400)


def _back(slug):
    return redirect(url_for("admin.dashboard", slug=slug), code=303)


@bp.post("/<slug>/targets/resume")
def resume_target(slug: str) -> BaseResponse:
    """Lift a target's suspension; its letters held for it (not for a moderator) are due now."""
    target = _target_of(_campaign_or_404(slug), "target")
    released = states.resume(target.key)
    db.session.commit()
    log.info("organiser %s resumed %s: %s held letters due", g.organiser.email, target.key, released)
    flash(_("%(target)s resumed: %(num)s held letters will be sent.", target=target.key, num=released))
    _state().wake_worker()
    return _back(slug)


@bp.post("/<slug>/targets/cancel")
def cancel_target(slug: str) -> BaseResponse:
    """Cancel the letters of this campaign to one address that wait (pending, or held for its suspension)."""
    key = _waiting_address(_campaign_or_404(slug))
    cancelled = states.cancel(key, campaign_slug=slug)
    db.session.commit()
    log.info("organiser %s cancelled %s letters to %s", g.organiser.email, cancelled, key)
    flash(_("%(num)s letters to %(target)s cancelled.", num=cancelled, target=key))
    return _back(slug)


@bp.post("/<slug>/targets/reroute")
def reroute_target(slug: str) -> BaseResponse:
    """Move the waiting letters of this campaign to one address (a target, or a former one) to a target of it."""
    campaign = _campaign_or_404(slug)
    old, new = _waiting_address(campaign), _target_of(campaign, "new")
    if old == new.key:
        abort(400)
    moved = states.reroute(old, new.key, campaign.slug, new.channel)
    db.session.commit()
    log.info("organiser %s moved %s letters from %s to %s", g.organiser.email, moved, old, new.key)
    flash(_("%(num)s letters moved from %(old)s to %(new)s.", num=moved, old=old, new=new.key))
    _state().wake_worker()
    return _back(slug)
