"""The migrations build exactly the tables the models describe, on SQLite and on PostgreSQL."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.extensions import db

# SQLite's reflection skips the supporters search's indexes on lower(…);
# they are compared on PostgreSQL.
pytestmark = [pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index"),
              pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")]


def differences(app):
    """What Alembic's autogenerate would change to make the migrated database match the models."""
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_migrations_match_the_models_on_sqlite(app):
    assert differences(app) == []


@pytest.mark.postgres
def test_migrations_match_the_models_on_postgresql(postgres_cluster, make_app):
    assert differences(make_app(SQLALCHEMY_DATABASE_URI=postgres_cluster())) == []
