"""The dashboard's figures as running totals, kept by the database itself.

The dashboard shows, per campaign: accepted signatures per day, per country
and per language, opt-ins, held and unconfirmed signatures, and per target the
letters sent, delivered, bounced, queued, held and failed, plus letters sent today. Counted from
the rows, that is a scan of every signature and letter (13.7 s at a million
signatures and five million letters on SQLite). Here each figure is one row of
``figure`` (campaign, name, key, n), moved in the same transaction as the row
it counts, by triggers on ``signature`` and ``delivery``
(:func:`install_triggers`, made by the migration).

Why triggers and not a call in every place that changes a status: the
statuses change in many places, several of them bulk ``UPDATE``/``DELETE``
statements (approving, retrying, forgetting, purging, the worker's claims),
and some change a counted column that is not a status (withdrawing consent
changes ``opt_in``). A trigger sees every row any statement touches, whoever
wrote it, so a new code path cannot forget a total. The rules live in one
place, :data:`SIGNATURE_FIGURES` and :data:`DELIVERY_FIGURES`, from which the
SQLite triggers, the PostgreSQL trigger functions and the recount
(:func:`recount`, also the migration's backfill) are all generated.

The public counter (:mod:`app.tally`) is separate: it counts what the form
answered, dropped repeats included, and is not lowered by a retention purge.
"""

import re
from collections.abc import Sequence

from sqlalchemy import Connection, inspect, select, text

from .extensions import db
from .models import Figure

#: A day as 'YYYY-MM-DD' (UTC, like every stored time), per dialect.
_DAY = {"sqlite": "date({col})", "postgresql": "to_char({col}, 'YYYY-MM-DD')"}

#: (name, key, condition) per figure a signature row adds to; SQL with ``{r}``
#: for the row (NEW, OLD, or the table in a recount) and ``{day}`` for the
#: dialect's day expression.
SIGNATURE_FIGURES = (
    ("'status'", "{r}.status", "1 = 1"),
    ("'day'", "{day}", "{r}.status = 'accepted'"),
    ("'country'", "{r}.country", "{r}.status = 'accepted'"),
    ("'language'", "{r}.language", "{r}.status = 'accepted'"),
    ("'opt_in'", "'yes'", "{r}.status = 'accepted' AND {r}.opt_in"),
    # Letters in the supporter's own words (the dashboard's share of edited letters).
    ("'edited'", "'yes'", "{r}.status = 'accepted' AND {r}.edited"),
)
#: The columns whose change can move a signature's figures.
SIGNATURE_COLUMNS = ("campaign", "status", "created_at", "country", "language", "opt_in", "edited")
#: What the figures are made of, per row: the update trigger runs only when
#: one of these changes, not whenever a listed column does.
SIGNATURE_INPUTS = tuple(f"{{r}}.{column}" for column in SIGNATURE_COLUMNS)

#: Letters to targets only (mail to the supporter's own mailbox is not a
#: letter). Pending, sending and in a digest not gone yet are one figure, "queued", and the update
#: trigger compares that figure, not the status (:data:`DELIVERY_INPUTS`): a
#: worker's claim (pending to sending) touches no ``figure`` row, so two
#: workers claiming at once, each locking rows in its own order, cannot
#: deadlock on the totals, nor wait on a signing's locks.
_LETTER_STATUS = "CASE WHEN {r}.status IN ('pending', 'sending', 'in_digest') THEN 'queued' ELSE {r}.status END"
#: The letter statuses that count as sent (:data:`app.states.WENT_OUT`).
SENT_STATUSES = ("sent", "delivered", "bounced")
DELIVERY_FIGURES = (
    ("'letters:' || " + _LETTER_STATUS, "{r}.target_key", "{r}.kind = 'letter'"),
    # Sent per day: a delivered or bounced letter was sent too.
    ("'sent_on'", "{day}", "{r}.kind = 'letter' AND {r}.status IN ("
                           + ", ".join(f"'{status}'" for status in SENT_STATUSES) + ") AND {r}.sent_at IS NOT NULL"),
)
DELIVERY_COLUMNS = ("campaign", "kind", "status", "target_key", "sent_at")
DELIVERY_INPUTS = ("{r}.campaign", "{r}.kind", _LETTER_STATUS, "{r}.target_key", "{r}.sent_at")

_TABLES = (("signature", SIGNATURE_FIGURES, SIGNATURE_COLUMNS, SIGNATURE_INPUTS, "created_at"),
           ("delivery", DELIVERY_FIGURES, DELIVERY_COLUMNS, DELIVERY_INPUTS, "sent_at"))

_UPSERT = ("INSERT INTO figure (campaign, name, key, n) {source} "
           "ON CONFLICT (campaign, name, key) DO UPDATE SET n = figure.n + excluded.n")


def _sql(template, row, dialect, day_column):
    return template.format(r=row, day=_DAY[dialect].format(col=f"{row}.{day_column}"))


def _sqlite_triggers(table, figures, columns, inputs, day_column):
    def changes(row, sign):
        return "".join(
            _UPSERT.format(source=f"SELECT {row}.campaign, {_sql(name, row, 'sqlite', day_column)}, "
                                  f"{_sql(key, row, 'sqlite', day_column)}, {sign} "
                                  f"WHERE {_sql(cond, row, 'sqlite', day_column)}") + ";\n"
            for name, key, cond in figures
        )

    changed = " OR ".join(f"({i.format(r='OLD')}) IS NOT ({i.format(r='NEW')})" for i in inputs)
    return [
        f"CREATE TRIGGER figure_{table}_insert AFTER INSERT ON {table} BEGIN\n{changes('NEW', 1)}END",
        f"CREATE TRIGGER figure_{table}_delete AFTER DELETE ON {table} BEGIN\n{changes('OLD', -1)}END",
        f"CREATE TRIGGER figure_{table}_update AFTER UPDATE OF {', '.join(columns)} ON {table} "
        f"WHEN {changed} BEGIN\n{changes('OLD', -1)}{changes('NEW', 1)}END",
    ]


def _postgresql_triggers(table, figures, columns, inputs, day_column):
    def changes(row, sign):
        return "".join(
            f"  IF {_sql(cond, row, 'postgresql', day_column)} THEN\n    "
            + _UPSERT.format(source=f"VALUES ({row}.campaign, {_sql(name, row, 'postgresql', day_column)}, "
                                    f"{_sql(key, row, 'postgresql', day_column)}, {sign})")
            + ";\n  END IF;\n"
            for name, key, cond in figures
        )

    changed = " OR ".join(f"({i.format(r='OLD')}) IS DISTINCT FROM ({i.format(r='NEW')})" for i in inputs)
    return [
        f"CREATE FUNCTION figure_{table}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n"
        f" IF TG_OP IN ('UPDATE', 'DELETE') THEN\n{changes('OLD', -1)} END IF;\n"
        f" IF TG_OP IN ('INSERT', 'UPDATE') THEN\n{changes('NEW', 1)} END IF;\n"
        f" RETURN NULL;\nEND\n$$",
        f"CREATE TRIGGER figure_{table}_insert_delete AFTER INSERT OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION figure_{table}()",
        f"CREATE TRIGGER figure_{table}_update AFTER UPDATE OF {', '.join(columns)} ON {table} "
        f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION figure_{table}()",
    ]


def trigger_statements(dialect: str, tables: Sequence[tuple] = _TABLES) -> list[str]:
    """The DDL that makes the database keep ``figure`` true, for ``dialect`` (sqlite or postgresql)."""
    make = {"sqlite": _sqlite_triggers, "postgresql": _postgresql_triggers}[dialect]
    return [statement for args in tables for statement in make(*args)]


def _on_this_schema(connection):
    """:data:`_TABLES` without the figures and columns the database's tables do not have yet.

    A migration installs the triggers as this module defines them today; an
    older migration in the chain runs before later columns exist (``edited``
    came after the totals), so it gets the figures its schema can hold, and
    the migration that adds a column installs them again.
    """
    inspector = inspect(connection)
    tables = []
    for table, figures, columns, inputs, day_column in _TABLES:
        have = {column["name"] for column in inspector.get_columns(table)}

        def fits(*sql, have=have):
            return set(re.findall(r"\{r\}\.(\w+)", " ".join(sql))) <= have

        tables.append((table, [f for f in figures if fits(*f)], [c for c in columns if c in have],
                       [i for i in inputs if fits(i)], day_column))
    return tables


def drop_statements(dialect: str) -> list[str]:
    """The DDL that removes what :func:`trigger_statements` made."""
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS figure_{t}_{op}" for t, *_ in _TABLES for op in ("insert", "delete", "update")]
    return [f"DROP FUNCTION IF EXISTS figure_{t}() CASCADE" for t, *_ in _TABLES]


def install_triggers(connection: Connection) -> None:
    """Create the triggers on ``connection`` (a SQLAlchemy Connection)."""
    for statement in trigger_statements(connection.dialect.name, _on_this_schema(connection)):
        connection.execute(text(statement))


def drop_triggers(connection: Connection) -> None:
    for statement in drop_statements(connection.dialect.name):
        connection.execute(text(statement))


def recount(connection: Connection) -> None:
    """Rebuild every figure from the rows (the migration's backfill; a repair). Not committed."""
    dialect = connection.dialect.name
    connection.execute(text("DELETE FROM figure"))
    for table, figures, _columns, _inputs, day_column in _on_this_schema(connection):
        for name, key, cond in figures:
            name_sql, key_sql = _sql(name, "r", dialect, day_column), _sql(key, "r", dialect, day_column)
            connection.execute(text(_UPSERT.format(
                source=f"SELECT r.campaign, {name_sql}, {key_sql}, count(*) FROM {table} r "
                       f"WHERE {_sql(cond, 'r', dialect, day_column)} GROUP BY 1, 2, 3")))


def figures(slug: str) -> dict[str, dict[str, int]]:
    """``{name: {key: n}}`` of campaign ``slug``, zeros left out: one indexed read."""
    found = {}
    for name, key, n in db.session.execute(
        select(Figure.name, Figure.key, Figure.n).where(Figure.campaign == slug, Figure.n != 0)
    ):
        found.setdefault(name, {})[key] = n
    return found
