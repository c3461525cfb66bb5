"""Keyset pagination by id for the organisers' long lists (supporters, moderation).

Never OFFSET: a page is "the rows just older than id X" (``?before=X``) or
"just newer than X" (``?after=X``), so the thousandth page costs what the
first does, and a row added or removed meanwhile shifts nothing.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select

from .extensions import db


@dataclass(frozen=True)
class Page:
    """One page of rows, in the order shown, and where the links beside it lead."""

    rows: list[Any]
    #: The id for a link to the newer rows (``?after=``), or None when there are none.
    newer: int | None
    #: The id for a link to the older rows (``?before=``), or None when there are none.
    older: int | None


def keyset_page(query: Select, id_column: Any, size: int, before: int | None = None, after: int | None = None,
                oldest_first: bool = False) -> Page:
    """The page of ``query`` (its rows have ``.id``) that ``before`` or ``after`` asks for, ``size`` rows at most.

    Without either: the newest rows, or with ``oldest_first`` the oldest.
    The rows come newest first, or oldest first with ``oldest_first``.
    """
    if after is not None or (before is None and oldest_first):
        if after is not None:
            query = query.where(id_column > after)
        rows = db.session.scalars(query.order_by(id_column).limit(size + 1)).all()
        more_newer, more_older = len(rows) > size, after is not None
        rows = rows[:size]
    else:
        if before is not None:
            query = query.where(id_column < before)
        rows = db.session.scalars(query.order_by(id_column.desc()).limit(size + 1)).all()
        more_newer, more_older = before is not None, len(rows) > size
        rows = rows[:size][::-1]
    # ``rows`` is oldest first here.
    newer = rows[-1].id if rows and more_newer else None
    older = rows[0].id if rows and more_older else None
    return Page(rows if oldest_first else rows[::-1], newer, older)
