"""Flask extensions, created without an app and bound in :func:`app.create_app`."""

from typing import Any

from flask_babel import Babel
from flask_limiter import Limiter
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase

from .lazy_migrate import LazyMigrate
from .security import client_key


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
# Flask-Migrate (and Alembic) are imported only when something migrates: see app/lazy_migrate.py.
migrate = LazyMigrate()
csrf = CSRFProtect()
# No default limits: only the routes that send letters or check passwords are
# limited, each with its own configured rate. Every limit counts by a keyed
# hash of the client address, never the address: Flask-Limiter writes its key
# into storage (Redis keys outlive the request) and into its log lines.
limiter = Limiter(key_func=client_key)
babel = Babel()


def upsert_insert(dialect: str) -> Any:
    """The ``insert`` of the dialect named ``dialect`` (sqlite, postgresql): the one with ON CONFLICT, for upserts."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert
