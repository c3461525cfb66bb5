"""The public counter of accepted signatures, kept in ``campaign_tally``.

Why a counter row and not a cache: a short-lived cache still runs the full
``COUNT(*)`` once per expiry in every process, shows a stale number right after
someone signs ("I signed and the number did not move"), and needs shared
storage once there are several web hosts. One row updated in the signing
transaction is exact, costs one indexed read per page view, and works the same
on SQLite and PostgreSQL. Every change of a signature to or from ``accepted``
goes through :func:`add` in the same transaction, called only by :mod:`app.states`.

A dropped submission that a new signer's would have been accepted counts too
(a stand-in, see :mod:`app.letter_status`): otherwise anyone watching the
counter of a quiet campaign could send an address and see whether it had
signed. So the public number counts signatures as the form answered them, a
repeated one included; the dashboard's "Signatures" counts distinct rows.
"""

from sqlalchemy import Integer, bindparam, select
from sqlalchemy.sql import Executable

# The module, not the name: app.states imports this module while app.models
# may still be loading (it imports the statuses from app.states).
from . import models
from .extensions import db, upsert_insert

#: dialect name -> the upsert :func:`add` runs, made on first use.
_UPSERTS: dict[str, Executable] = {}


def add(slug: str, delta: int) -> None:
    """Add ``delta`` (may be negative) to ``slug``'s counter, in the current transaction.

    One upsert statement, so two first signatures at once cannot both insert
    the row, and concurrent increments do not lose each other.
    """
    if not delta:
        return
    # On the connection, not through the session's execute (its ORM path
    # nearly doubled the statement's time); no ORM object of this table is
    # ever pending, so there is nothing to flush first.
    connection = db.session.connection()
    connection.execute(_upsert(connection.dialect.name), {"slug": slug, "first": max(delta, 0), "delta": delta})


def _upsert(dialect: str) -> Executable:
    # Built once per dialect with bound parameters: building the statement
    # anew cost more than running it.
    statement = _UPSERTS.get(dialect)
    if statement is None:
        table = models.CampaignTally.__table__
        statement = upsert_insert(dialect)(table).values(campaign=bindparam("slug"), accepted=bindparam("first"))
        statement = _UPSERTS[dialect] = statement.on_conflict_do_update(
            index_elements=[table.c.campaign],
            set_={"accepted": table.c.accepted + bindparam("delta", type_=Integer)},
        )
    return statement


def accepted(slug: str) -> int:
    """How many supporters' letters were accepted for ``slug`` (one primary-key read)."""
    return db.session.scalar(select(models.CampaignTally.accepted).where(models.CampaignTally.campaign == slug)) or 0
