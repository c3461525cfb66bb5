"""The outcomes of a batch on their way to the database: one commit each, or grouped (DELIVERY_COMMIT_SECONDS).

A commit on SQLite (WAL), with the totals' triggers, costs more than
sending a letter to a fast local relay. So the outcomes are written by a
thread of their own, on a connection of their own, while the batch's
thread sends the next letter (:class:`Outcomes`). With
``DELIVERY_COMMIT_SECONDS`` above 0 the batch's thread keeps the outcomes
it recorded and hands them over together, written with one executemany
``UPDATE … WHERE id = ?``, at most that many seconds after the oldest of
them. The price is the crash window: a worker killed meanwhile loses those
outcomes, and their letters (already at the server) go again once their
lease ends.
"""

import functools
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, select, update

from ..extensions import db
from ..models import Delivery, utcnow
from .queue import _taken_changes

# One logger for the whole package, named as before it was one.
log = logging.getLogger("app.delivery")

_TABLE = Delivery.__table__
#: Parameter name of the row's id: a column's own name is reserved for its SET clause.
_ID = "delivery_id"
_UPDATE = update(_TABLE).where(_TABLE.c.id == bindparam(_ID))


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

    The outcomes are written and committed by a thread of their own
    (:class:`_Writer`) on a connection of its own, while the batch's thread
    goes on building and sending: the database's time (SQLite's UPDATE and
    commit, PostgreSQL's round trips) overlaps the sending instead of adding
    to it. At most :attr:`UNWRITTEN` commits wait for the writer; the batch
    waits beyond that, so a worker that dies loses no more than they held:
    with one connection, the outcome of the letter at the server and of the
    one being committed. Grouped commits (``DELIVERY_COMMIT_SECONDS``) are
    waited for, once a window, so a crash loses at most one window's.

    Hooks run in the batch's thread after the commit that records their
    letter, so a plugin never hears of an outcome a crash could still undo;
    a letter whose row was deleted meanwhile (``clamor forget``) has no
    recorded outcome, and its hooks do not run.
    """

    UNWRITTEN = 1

    def __init__(self, state: Any, seconds: float) -> None:
        self.state, self.seconds = state, seconds
        #: (delivery id, changed columns, hook calls) per outcome, oldest first.
        self.pending: list[tuple[int, dict[str, Any], list]] = []
        self.hooks: list[tuple[str, dict[str, Any]]] = []
        self.oldest = 0.0
        self.writer: _Writer | None = None

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call plugin hook ``hook`` with ``kwargs`` after the commit of the outcome :meth:`add` takes next."""
        self.hooks.append((hook, kwargs))

    def add(self, delivery: Delivery) -> None:
        """Take the outcome recorded on the detached ``delivery``; commit when one is due."""
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
        """Hand every outcome held to the writer; run the hooks of what it committed meanwhile.

        Waits while :attr:`UNWRITTEN` commits are waiting already (for a
        grouped commit, until it is made). Raises the writer's error, if a
        write failed.
        """
        pending, self.pending = self.pending, []
        if self.writer is None:
            self.writer = _Writer(db.engine)
        self._settle(*self.writer.hand_over(pending, 0 if self.seconds else self.UNWRITTEN))

    def finish(self) -> None:
        """Commit what is held and wait until everything is committed; run the hooks; stop the writer."""
        try:
            if self.pending:
                self.commit()
        finally:  # the writer stops even when the last commit failed
            if self.writer is not None:
                writer, self.writer = self.writer, None
                self._settle(*writer.close())

    def _settle(self, written, error):
        """Run the hooks of the outcomes ``written``, then raise the writer's ``error``, if any."""
        called = False
        for delivery_id, hooks in written:
            if delivery_id is None:
                continue
            for hook, kwargs in hooks:
                called |= _notify(self.state, hook, **kwargs)
        if called:
            # A plugin may have written through the session: committed now, or
            # its write lock (SQLite) would keep the writer waiting.
            db.session.commit()
        if error is not None:
            raise error


class _Writer:
    """A thread that writes and commits, in the order given, the outcomes handed to it, on a connection of its own."""

    def __init__(self, engine):
        self.engine = engine
        self.jobs = queue.SimpleQueue()
        self.done = queue.SimpleQueue()
        self.waiting = 0
        self.thread = threading.Thread(target=self._run, name="clamor-outcomes", daemon=True)
        self.thread.start()

    def _run(self):
        connection = None
        try:
            while (pending := self.jobs.get()) is not None:
                try:
                    # Opened on first use, and again after a failure (the database was down, say).
                    connection = connection or self.engine.raw_connection()
                    missing = _update(connection, self.engine.dialect, pending)
                    connection.commit()
                except BaseException as exc:  # handed to the batch's thread, which stops the batch
                    connection = _discard(connection)
                    self.done.put(exc)
                    continue
                for delivery_id, _changes, _hooks in pending:
                    if delivery_id in missing:
                        log.info("delivery %s was deleted while it was being sent", delivery_id)
                self.done.put([(None if delivery_id in missing else delivery_id, hooks)
                               for delivery_id, _changes, hooks in pending])
        finally:
            _discard(connection)

    def hand_over(self, pending, unwritten):
        """Queue ``pending`` for writing; wait while more than ``unwritten`` are queued; :meth:`_collect`'s answer."""
        self.jobs.put(pending)
        self.waiting += 1
        return self._collect(lambda: self.waiting > unwritten or not self.done.empty())

    def close(self):
        """Wait for every write and stop the thread; :meth:`_collect`'s answer."""
        self.jobs.put(None)
        answer = self._collect(lambda: self.waiting)
        self.thread.join()
        return answer

    def _collect(self, more):
        """(what was written, the first error or None) of the writes that finish while ``more()`` holds."""
        written, error = [], None
        while more():
            self.waiting -= 1
            result = self.done.get()
            if isinstance(result, BaseException):
                error = error or result
            else:
                written += result
        return written, error


def _update(connection, dialect, pending):
    """One executemany UPDATE per set of changed columns (one in a batch of sent letters); return ids not found.

    ``connection``: the writer's DBAPI connection (:meth:`Engine.raw_connection`).
    Not through the ORM, whose flush of one row cost twice as much as
    sending the letter, nor SQLAlchemy's ``execute``, whose own work per
    call was half of SQLite's (and, in the writer's thread, held the
    interpreter's lock the batch's thread needs): the statement is compiled
    by SQLAlchemy once per set of columns (:func:`_statement`). A row
    deleted meanwhile updates nothing; when the driver's count says some
    row was not there, each id is looked up, in the same transaction.
    """
    groups = defaultdict(list)
    now = utcnow()
    for delivery_id, changes, _hooks in pending:
        if changes:
            # updated_at: what the column's onupdate would have set through SQLAlchemy.
            row = {**changes, "updated_at": now}
            groups[tuple(sorted(row))].append({**row, _ID: delivery_id})
    cursor = connection.cursor()
    try:
        updated = 0
        for columns, rows in groups.items():
            sql, order, convert = _statement(dialect, columns)
            parameters = [convert(row) for row in rows]
            if order is not None:  # a positional paramstyle (SQLite's "?")
                parameters = [tuple(row[name] for name in order) for row in parameters]
            cursor.executemany(sql, parameters)
            updated += cursor.rowcount
        ids = [delivery_id for delivery_id, changes, _hooks in pending if changes]
        if updated == len(ids) and (len(ids) < 2 or dialect.supports_sane_multi_rowcount):
            return set()
        sql, order, convert = _statement(dialect, None)
        missing = set()
        for delivery_id in ids:
            cursor.execute(sql, convert({_ID: delivery_id}) if order is None else (delivery_id,))
            if cursor.fetchone() is None:
                missing.add(delivery_id)
        return missing
    finally:
        cursor.close()


def _discard(connection):
    """Roll back and close ``connection`` (a DBAPI connection, or None) whatever state it is in; return None."""
    for step in ("rollback", "close") if connection is not None else ():
        try:
            getattr(connection, step)()
        except Exception:  # a broken connection: the pool drops it
            log.debug("the outcome writer's connection failed to %s", step, exc_info=True)


@functools.cache
def _statement(dialect, columns):
    """(SQL, positional parameter names or None for named ones, row converter) of the UPDATE of ``columns``.

    ``columns`` None: the SELECT that finds a row by id. The converter
    applies each column type's bind processor for ``dialect`` (SQLite keeps
    times as text), as SQLAlchemy's own execute would.
    """
    if columns is None:
        compiled = select(_TABLE.c.id).where(_TABLE.c.id == bindparam(_ID)).compile(dialect=dialect)
    else:
        compiled = _UPDATE.compile(dialect=dialect, column_keys=list(columns))
    processors = {}
    for name in columns or ():
        processor = _TABLE.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors[name] = processor

    def convert(row):
        return {name: processors[name](value) if name in processors else value for name, value in row.items()}

    order = compiled.positiontup
    return compiled.string, (list(order) if order is not None and dialect.positional else None), convert


def _notify(state, hook, **kwargs):
    """Call plugin hook ``hook``; False when no plugin implements it (nothing was called)."""
    caller = getattr(state.plugin_manager.hook, hook)
    if not caller.get_hookimpls():
        return False
    try:
        caller(**kwargs)
    except Exception:
        log.exception("a %s hook raised; the delivery's status stands", hook)
    return True
