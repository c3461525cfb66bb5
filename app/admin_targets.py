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

log = logging.getLogger(__name__)


def _target_of(campaign, field):
    """The campaign's target named by the form's ``field``, or 400."""
    key = request.form.get(field, "")
    for target in campaign.targets:
        if target.key == key:
            return target
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
    """Cancel the letters of this campaign's target that wait (pending, or held for its suspension)."""
    target = _target_of(_campaign_or_404(slug), "target")
    cancelled = states.cancel(target.key, campaign_slug=slug)
    db.session.commit()
    log.info("organiser %s cancelled %s letters to %s", g.organiser.email, cancelled, target.key)
    flash(_("%(num)s letters to %(target)s cancelled.", num=cancelled, target=target.key))
    return _back(slug)


@bp.post("/<slug>/targets/reroute")
def reroute_target(slug: str) -> BaseResponse:
    """Move the waiting letters of one target of the campaign to another target of it."""
    campaign = _campaign_or_404(slug)
    old, new = _target_of(campaign, "target"), _target_of(campaign, "new")
    if old.key == new.key:
        abort(400)
    moved = states.reroute(old.key, new.key, campaign.slug, new.channel)
    db.session.commit()
    log.info("organiser %s moved %s letters from %s to %s", g.organiser.email, moved, old.key, new.key)
    flash(_("%(num)s letters moved from %(old)s to %(new)s.", num=moved, old=old.key, new=new.key))
    _state().wake_worker()
    return _back(slug)
