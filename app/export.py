"""Supporters as CSV, one row at a time: shared by ``clamor export`` and the admin page.

Rows are fetched ``yield_per`` at a time and written as they come, so memory
stays flat however many supporters a campaign has (bench/export.py measures it).
They are plain rows of the columns the CSV needs, not ORM objects: building
and then expunging a Signature per row was most of the export's time, and an
export from the admin page must finish within gunicorn's worker timeout.
"""

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import Select, select

from .extensions import db
from .models import Signature
from .states import SignatureStatus

#: The CSV header, in order. ``unsubscribe_url`` is filled for opt-in rows only.
EXPORT_COLUMNS = (
    "name", "email", "organisation", "country", "language", "opt_in",
    "consent_version", "consent_language", "consented_at", "created_at", "campaign", "unsubscribe_url",
)

BATCH = 500


#: Where a spreadsheet cell could begin a formula: at the start of the value
#: or after a ";" in it (a French or Russian Excel splits on ";"), past
#: whitespace and quotes, before = + - @ (or a tab or CR, which some strip).
_FORMULA = re.compile(r"""(^|;)([\s"']*)(?=[=+\-@\t\r])""")


def spreadsheet_safe(value: str) -> str:
    """``value`` with a quote (') put before every character that would start a formula.

    A reader splitting on "," (the CSV's delimiter) starts a cell only at the
    start of a value. One splitting on ";" starts one after every ";" in a
    value, quoted field or not (quoting every field protects only the first
    of a line: past its closing quote the reader is in an unquoted cell), so
    the guard goes there as well as at the start (``Anna;'=HYPERLINK(…)``),
    never elsewhere. Each guard is one quote right before the trigger, even
    where quotes are already, so :func:`spreadsheet_value` gives the value back.
    """
    if ";" not in value and not (value[:1] in _MAY_LEAD or value[:1].isspace()):
        # The common case, and most of the export's cells: no formula can start anywhere.
        return value
    return _FORMULA.sub(r"\1\2'", value)


#: What a cell's first character must be for _FORMULA to match at its start
#: (whitespace besides, which ``str.isspace`` tells as ``\s`` does).
_MAY_LEAD = frozenset("\"'=+-@\t\r")


def spreadsheet_value(cell: str) -> str:
    """The value a :func:`spreadsheet_safe` cell was made from (the guards taken out)."""
    return re.sub(r"""(^|;)([\s"']*)'(?=[=+\-@\t\r])""", r"\1\2", cell)


#: The columns :func:`export_row` and an unsubscribe link (:func:`app.links.unsubscribe_url`) read.
_COLUMNS = (
    Signature.id, Signature.name, Signature.email, Signature.organisation, Signature.country, Signature.language,
    Signature.opt_in, Signature.consent_version, Signature.consent_language, Signature.consented_at,
    Signature.created_at, Signature.campaign,
)


def export_query(slug: str | None = None, opt_in_only: bool = False) -> Select[Any]:
    """Accepted signatures (of ``slug``; opt-ins only if asked), oldest first, as rows of the columns exported.

    Each row reads like a :class:`Signature` of those columns (``row.email``,
    ``row.created_at`` …), which is what :func:`export_row` and the
    unsubscribe link need.
    """
    query = select(*_COLUMNS).where(Signature.status == SignatureStatus.ACCEPTED).order_by(Signature.id)
    if slug:
        query = query.where(Signature.campaign == slug)
    if opt_in_only:
        query = query.where(Signature.opt_in.is_(True))
    return query


def export_row(signature: Any, unsubscribe_url: Callable[[Any], str] | None = None) -> list[str]:
    """One CSV row for ``signature`` (a row of :func:`export_query`, or a Signature).

    ``unsubscribe_url(signature)`` gives its link, if any.
    """
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


def iter_csv(query: Select[Any], unsubscribe_url: Callable[[Any], str] | None = None) -> Iterator[str]:
    """Yield the CSV of ``query`` (:func:`export_query`) as text: the header, then a chunk per :data:`BATCH` rows."""
    rows = db.session.execute(query.execution_options(yield_per=BATCH))
    return csv_chunks(EXPORT_COLUMNS, (export_row(row, unsubscribe_url) for row in rows))


def csv_chunks(header: Iterable[str], rows: Iterable[Iterable[str]]) -> Iterator[str]:
    """Yield ``header`` and ``rows`` as CSV text, about one chunk per :data:`BATCH` rows.

    The rows' cells are written as given: make each one with
    :func:`spreadsheet_safe` (the supporters' export and the letters' CSV,
    :mod:`app.letters_csv`, both do).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for count, row in enumerate(rows, 1):
        writer.writerow(row)
        if count % BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
