"""Supporters as CSV, one row at a time: shared by ``clamor export`` and the admin page.

Rows are fetched ``yield_per`` at a time and written as they come, so memory
stays flat however many supporters a campaign has (bench/export.py measures it).
"""

import csv
import io

from sqlalchemy import select

from .extensions import db
from .models import Signature

#: The CSV header, in order. ``unsubscribe_url`` is filled for opt-in rows only.
EXPORT_COLUMNS = (
    "name", "email", "organisation", "country", "language", "opt_in",
    "consent_version", "consent_language", "consented_at", "created_at", "campaign", "unsubscribe_url",
)

BATCH = 500


def spreadsheet_safe(value):
    """Prefix a quote to text a spreadsheet would run as a formula (=, +, -, @)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def export_query(slug=None, opt_in_only=False):
    """Accepted signatures (of ``slug``; opt-ins only if asked), oldest first."""
    query = select(Signature).where(Signature.status == "accepted").order_by(Signature.id)
    if slug:
        query = query.where(Signature.campaign == slug)
    if opt_in_only:
        query = query.where(Signature.opt_in.is_(True))
    return query


def export_row(signature, unsubscribe_url=None):
    """One CSV row for ``signature``; ``unsubscribe_url(signature)`` gives the link, if any."""
    return [
        spreadsheet_safe(value)
        for value in (
            signature.name,
            signature.email,
            signature.organisation,
            signature.country,
            signature.language,
            "yes" if signature.opt_in else "no",
            signature.consent_version or "",
            signature.consent_language or "",
            signature.consented_at.isoformat() if signature.consented_at else "",
            signature.created_at.isoformat(),
            signature.campaign,
            unsubscribe_url(signature) if unsubscribe_url and signature.opt_in else "",
        )
    ]


def iter_csv(query, unsubscribe_url=None):
    """Yield the CSV as text chunks: the header, then about one chunk per :data:`BATCH` rows.

    Each fetched batch is expunged from the session after it is written, or
    the identity map would keep every row alive until the end.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for signature in db.session.scalars(query.execution_options(yield_per=BATCH)):
        writer.writerow(export_row(signature, unsubscribe_url))
        db.session.expunge(signature)
        count += 1
        if count % BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
