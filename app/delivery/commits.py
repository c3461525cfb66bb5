"""The outcomes of a batch on their way to the database: one commit each, or grouped (DELIVERY_COMMIT_SECONDS).

A commit on SQLite (WAL), with the totals' triggers, costs more than
sending a letter to a fast local relay. With ``DELIVERY_COMMIT_SECONDS`` above 0 the batch's thread keeps the
outcomes it recorded and writes them together, with one executemany
``UPDATE … WHERE id = ?``, at most that many seconds after the oldest of
them. The price is the crash window: a worker killed meanwhile loses those
outcomes, and their letters (already at the server) go again once their
lease ends.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, select, update

from ..extensions import db
from ..models import Delivery
from .queue import _taken_changes

# One logger for the whole package, named as before it was one.
log = logging.getLogger("app.delivery")

_TABLE = Delivery.__table__
#: Parameter name of the row's id: a column's own name is reserved for its SET clause.
_ID = "delivery_id"
_UPDATE = update(_TABLE).where(_TABLE.c.id == bindparam(_ID))
_PRESENT = select(_TABLE.c.id).where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))


def commit_seconds(config: Mapping[str, Any]) -> float:
    """``DELIVERY_COMMIT_SECONDS``, checked: a number of seconds, 0 or more, under a fifth of the lease.

    Raises ValueError naming the key otherwise. A batch stops handing letters
    over with a fifth of its lease left; outcomes held longer than that could
    still be uncommitted when another worker may claim their letters, and
    send them again without any crash.
    """
    seconds = config.get("DELIVERY_COMMIT_SECONDS", 0)
    lease = config["DELIVERY_LEASE_SECONDS"]
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds < lease / 5:
        raise ValueError("DELIVERY_COMMIT_SECONDS must be a number of seconds from 0 (a commit per letter) "
                         f"to under a fifth of DELIVERY_LEASE_SECONDS ({lease / 5:g}), not {seconds!r}")
    return seconds


class Outcomes:
    """A batch's outcomes not yet committed, and the ``letter_sent``/``letter_failed`` calls that wait for them.

    Hooks run after the commit that records their letter, so a plugin never
    hears of an outcome a crash could still undo; a letter whose row was
    deleted meanwhile (``clamor forget``) has no recorded outcome, and its
    hooks do not run.
    """

    def __init__(self, state: Any, seconds: float) -> None:
        self.state, self.seconds = state, seconds
        #: (delivery id, changed columns, hook calls) per outcome, oldest first.
        self.pending: list[tuple[int, dict[str, Any], list]] = []
        self.hooks: list[tuple[str, dict[str, Any]]] = []
        self.oldest = 0.0

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call plugin hook ``hook`` with ``kwargs`` after the commit of the outcome :meth:`add` takes next."""
        self.hooks.append((hook, kwargs))

    def add(self, delivery: Delivery) -> None:
        """Take the outcome recorded on ``delivery`` (it leaves the session); commit when one is due."""
        if not self.pending:
            self.oldest = time.monotonic()
        delivery_id, changes = _taken_changes(delivery)
        self.pending.append((delivery_id, changes, self.hooks))
        self.hooks = []
        if self.seconds_left() == 0:
            self.commit()

    def seconds_left(self) -> float | None:
        """Seconds until the held outcomes must be committed (0: now); None when none is held."""
        if not self.pending:
            return None
        return max(0.0, self.oldest + self.seconds - time.monotonic())

    def commit(self) -> None:
        """Write and commit every outcome held, then run their hooks (those of rows still there)."""
        pending, self.pending = self.pending, []
        missing = _update(pending) if pending else set()
        db.session.commit()
        for delivery_id, _changes, hooks in pending:
            if delivery_id in missing:
                log.info("delivery %s was deleted while it was being sent", delivery_id)
                continue
            for hook, kwargs in hooks:
                _notify(self.state, hook, **kwargs)


def _update(pending):
    """One executemany UPDATE per set of changed columns (one in a batch of sent letters); return ids not found.

    On the session's connection, not through the ORM (whose flush of one row
    cost twice as much as sending the letter). A row deleted meanwhile
    updates nothing; the ids still there are read back, in the same
    transaction, only when the driver's count does not already say all were.
    """
    groups = defaultdict(list)
    for delivery_id, changes, _hooks in pending:
        if changes:
            groups[tuple(sorted(changes))].append({_ID: delivery_id, **changes})
    connection = db.session.connection()
    updated = 0
    for rows in groups.values():
        # The SET clause is the columns the parameters name (besides the id).
        updated += connection.execute(_UPDATE, rows).rowcount
    expected = sum(len(rows) for rows in groups.values())
    if updated == expected and (expected < 2 or connection.dialect.supports_sane_multi_rowcount):
        return set()
    ids = [delivery_id for delivery_id, changes, _hooks in pending if changes]
    return set(ids) - set(connection.execute(_PRESENT, {"ids": ids}).scalars())


def _notify(state, hook, **kwargs):
    try:
        getattr(state.plugin_manager.hook, hook)(**kwargs)
    except Exception:
        log.exception("a %s hook raised; the delivery's status stands", hook)
