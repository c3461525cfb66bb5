"""The letters as CSV, for the organiser and the auditor: ``clamor deliveries --csv`` and the admin download.

One row per letter to a target (kind "letter"), in id order, read by keyset
(``id > last``, :data:`BATCH` rows a query) as plain column tuples, never
as ORM objects: memory stays flat at five million letters, and no query
gets slower the further it goes. Every cell is made safe for a spreadsheet
by :func:`app.export.spreadsheet_safe`; ``detail`` keeps no address but the
target's own.
"""

import re
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import select

from .export import BATCH, csv_chunks, spreadsheet_safe
from .extensions import db
from .models import Delivery
from .security import redact_addresses

#: The CSV header, exactly.
COLUMNS = ("id", "message_id", "campaign", "target", "channel", "status", "attempts", "updated_at", "detail")


def letter_rows(campaign: str | None = None) -> Iterator[list[str]]:
    """One row (cells as written, spreadsheet-safe) per letter (of ``campaign``, or of every campaign), oldest first."""
    columns = (Delivery.id, Delivery.message_id, Delivery.campaign, Delivery.target_key, Delivery.channel,
               Delivery.status, Delivery.attempts, Delivery.updated_at, Delivery.last_error, Delivery.note)
    query = select(*columns).where(Delivery.kind == "letter").order_by(Delivery.id).limit(BATCH)
    if campaign:
        # SQLite, which keeps no statistics, would read the campaign's letters
        # by its (campaign, kind, status) index and sort them all for every
        # batch: a query per batch as long as the whole campaign, 25 s at
        # 200,000 letters. ``campaign || ''`` is no index's column, so it reads
        # on from ``last`` in id order and stops after BATCH rows. PostgreSQL
        # has statistics, and the plain column.
        column = Delivery.campaign + "" if db.session.get_bind().dialect.name == "sqlite" else Delivery.campaign
        query = query.where(column == campaign)
    last = 0
    while rows := db.session.execute(query.where(Delivery.id > last)).all():
        for row in rows:
            yield [spreadsheet_safe(cell) for cell in _cells(row)]
        last = rows[-1].id
        if len(rows) < BATCH:
            return


def iter_letters_csv(campaign: str | None = None) -> Iterator[str]:
    """The letters' CSV (:data:`COLUMNS`, then :func:`letter_rows`) as text chunks."""
    return csv_chunks(COLUMNS, letter_rows(campaign))


def _cells(row):
    return (str(row.id), (row.message_id or "").strip().strip("<>"), row.campaign, row.target_key, row.channel,
            row.status, str(row.attempts), _utc(row.updated_at), detail(row.last_error or row.note, row.target_key))


def _utc(moment: datetime | None) -> str:
    # Times are stored naive UTC (app.models.utcnow).
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def detail(text: str | None, target: str) -> str:
    """``text`` with every email address in it redacted but ``target``'s own (the office it was sent to)."""
    if not text:
        return ""
    # The target only where it stands alone: "x.press@akorda.kz" is someone else.
    pieces = re.split(rf"(?<![\w.+-]){re.escape(target)}(?![\w.-])", text, flags=re.IGNORECASE) if target else [text]
    return target.join(redact_addresses(piece) for piece in pieces)
