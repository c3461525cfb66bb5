"""Flask-Migrate, imported only when something migrates.

Importing ``flask_migrate`` imports Alembic (and Mako with it): about 11 MB
of every gunicorn worker's memory (bench/web.py, worker RSS), for code a
worker serving pages never runs. :class:`LazyMigrate` does what
``Migrate.init_app`` does, ``app.extensions["migrate"]`` and the ``db``
command group, and imports Flask-Migrate the first time either is used:
``clamor db upgrade``, ``clamor init``, ``flask_migrate.upgrade()`` in the
tests and benchmarks.
"""

from typing import Any

import click
from flask import Flask
from flask_sqlalchemy import SQLAlchemy


class MigrateConfig:
    """What Flask-Migrate keeps in ``app.extensions["migrate"]``; its ``migrate`` is made on first use."""

    def __init__(self, db: SQLAlchemy, directory: str) -> None:
        self.db = db
        self.directory = directory
        self._migrate: Any = None

    @property
    def migrate(self) -> Any:
        """The ``flask_migrate.Migrate`` its functions ask for the Alembic config (imported now)."""
        if self._migrate is None:
            from flask_migrate import Migrate

            self._migrate = Migrate(db=self.db, directory=self.directory)
        return self._migrate

    @property
    def configure_args(self) -> dict[str, Any]:
        """The keyword arguments app/migrations/env.py passes to Alembic's ``context.configure``."""
        return self.migrate.alembic_ctx_kwargs

    @property
    def metadata(self) -> Any:
        return self.db.metadata


class _DbGroup(click.Group):
    """Flask-Migrate's ``db`` command group, imported when it runs or its subcommands are listed."""

    def __init__(self) -> None:
        super().__init__("db", help="Perform database migrations.", short_help="Perform database migrations.")

    @staticmethod
    def _real() -> click.Group:
        from flask_migrate.cli import db

        return db

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        return self._real().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        return self._real().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._real().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._real().get_command(ctx, cmd_name)


class LazyMigrate:
    """Stands in for ``flask_migrate.Migrate()`` in app/extensions.py."""

    def init_app(self, app: Flask, db: SQLAlchemy, directory: str) -> None:
        """Set ``app.extensions["migrate"]`` and add the ``db`` commands to ``app.cli``, importing nothing."""
        app.extensions["migrate"] = MigrateConfig(db, str(directory))
        app.cli.add_command(_DbGroup())
