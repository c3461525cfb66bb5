"""How Clamor opens its SQLite file: created private, then WAL, a busy timeout and foreign keys per connection."""

import os
from typing import Any


def create_private_file(database: str | None) -> None:
    """Create the SQLite file ``database`` empty and readable by its owner only, unless it exists.

    SQLite would create it with the umask's mode (often world-readable) and
    gives its -wal and -shm files the main file's mode, so creating it first
    with 0600 covers all three. An empty file is an empty database to SQLite.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        # There already, or its folder missing or not writable: SQLite says
        # what is wrong when it opens the file.
        pass


def set_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """SQLAlchemy ``connect`` listener: the busy timeout, WAL (synchronous NORMAL) and foreign keys, per connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()
