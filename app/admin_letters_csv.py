"""``GET /admin/<slug>/letters.csv``: the campaign's letters as CSV, the rows of ``clamor deliveries --csv``.

A view of the admin blueprint (so it needs an organiser's session like
every other), in a module of its own; :mod:`app.admin` imports it.
"""

import logging

from flask import Response, abort, current_app, g, stream_with_context

from .admin import bp
from .letters_csv import iter_letters_csv
from .models import utcnow

log = logging.getLogger("app.admin")


@bp.get("/<slug>/letters.csv")
def letters_csv(slug: str) -> Response:
    """Every letter of campaign ``slug``: one row each, streamed (:mod:`app.letters_csv`)."""
    if slug not in current_app.extensions["clamor"].campaigns:
        abort(404)
    log.info("organiser %s downloaded the letters of %s", g.organiser.email, slug)
    return Response(
        stream_with_context(iter_letters_csv(slug)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="deliveries-{slug}-{utcnow():%Y-%m-%d}.csv"'},
    )
