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


@pytest.mark.slow
def test_migrations_match_the_models_on_sqlite(app):
    assert differences(app) == []


@pytest.mark.postgres
def test_migrations_match_the_models_on_postgresql(postgres_cluster, make_app):
    assert differences(make_app(SQLALCHEMY_DATABASE_URI=postgres_cluster())) == []


#: Rows as 277cc0093619 found them: (status, last_error); what each must become: (last_error, note).
OLD_ROWS = [
    ("pending", "waiting: press@akorda.kz had 60 letters in the last hour (TARGET_HOURLY_CAP)",
     "", "waiting: press@akorda.kz had 60 letters in the last hour (TARGET_HOURLY_CAP)"),
    ("sent", "queued for faxing by +77172745631@fax.tc", "", "queued for faxing by +77172745631@fax.tc"),
    ("pending", "SMTP answered 451 greylisted", "SMTP answered 451 greylisted", ""),
    ("failed", "550 no such mailbox", "550 no such mailbox", ""),
    ("sent", "", "", ""),
]


def across_upgrade(app_config, instance_path, uri, before, insert, rows, after, query):
    """What ``query`` finds after an upgrade across rows stored at revision ``before``.

    The database at ``uri`` is upgraded to ``before``, ``insert`` runs once
    per dict of ``rows``, then it is upgraded to ``after`` (None: the head).
    """
    from flask_migrate import upgrade
    from sqlalchemy import text

    from app import create_app

    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": uri}, instance_path=instance_path)
    directory = app.extensions["migrate"].directory
    with app.app_context():
        upgrade(directory=directory, revision=before)
        for row in rows:
            db.session.execute(text(insert), row)
        db.session.commit()
        upgrade(directory=directory, revision=after or "head")
        found = db.session.execute(text(query)).all()
        db.session.remove()
        db.engine.dispose()
    return [tuple(row) for row in found]


def moves_notes_out_of_last_error(app_config, instance_path, uri):
    """Upgrade a database to f1e139258baf, store OLD_ROWS, upgrade to head: notes are in note, errors stay."""
    insert = ("INSERT INTO delivery (campaign, kind, target_key, channel, backend, status, attempts, "
              "next_attempt_at, last_error, provider_id, message_id, created_at) VALUES ('c', 'letter', "
              ":key, 'email', 'smtp', :status, 1, CURRENT_TIMESTAMP, :error, '', :mid, CURRENT_TIMESTAMP)")
    rows = [{"key": f"t{n}@example.org", "status": status, "error": last_error, "mid": f"<{n}@x>"}
            for n, (status, last_error, _, _) in enumerate(OLD_ROWS)]
    found = across_upgrade(app_config, instance_path, uri, "f1e139258baf", insert, rows, None,
                           "SELECT last_error, note FROM delivery ORDER BY id")
    assert found == [(error, note) for _, _, error, note in OLD_ROWS]


def test_the_note_migration_moves_cap_waits_and_receipt_notes_on_sqlite(app_config, instance_path, tmp_path):
    moves_notes_out_of_last_error(app_config, instance_path, f"sqlite:///{tmp_path / 'old.sqlite3'}")


@pytest.mark.postgres
def test_the_note_migration_moves_cap_waits_and_receipt_notes_on_postgresql(app_config, instance_path,
                                                                           postgres_cluster):
    moves_notes_out_of_last_error(app_config, instance_path, postgres_cluster())


def test_the_digest_slot_migration_keeps_each_targets_last_digest(app_config, instance_path, tmp_path):
    """A target given a digest before the upgrade keeps its period: its slot is its newest digest's time."""
    insert = ("INSERT INTO delivery (campaign, kind, target_key, channel, backend, status, attempts, "
              "next_attempt_at, last_error, note, provider_id, message_id, created_at) VALUES ('c', :kind, :key, "
              "'email', 'smtp', 'sent', 1, :created, '', '', '', :mid, :created)")
    rows = [("digest", "a@example.org", "2026-12-01 09:00:00"), ("digest", "a@example.org", "2026-12-02 09:00:00"),
            ("digest", "b@example.org", "2026-12-02 10:00:00"), ("letter", "c@example.org", "2026-12-02 11:00:00")]
    found = across_upgrade(app_config, instance_path, f"sqlite:///{tmp_path / 'old.sqlite3'}", "ff7c44e21ed9", insert,
                           [{"kind": kind, "key": key, "created": created, "mid": f"<{n}@x>"}
                            for n, (kind, key, created) in enumerate(rows)], "be2acbff1554",
                           "SELECT campaign, target_key, last_gathered_at FROM digest_slot ORDER BY target_key")
    assert [(c, k, str(at)[:19]) for c, k, at in found] == [("c", "a@example.org", "2026-12-02 09:00:00"),
                                                            ("c", "b@example.org", "2026-12-02 10:00:00")]


def test_revisions_form_one_chain_named_by_alembic_ids():
    """Each revision's id is Alembic's (12 hex digits, the file's prefix) and the revisions form one line."""
    import re
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "app" / "migrations" / "versions"
    parents = {}
    for path in folder.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision = re.search(r"^revision = '(\w+)'", source, re.M).group(1)
        down = re.search(r"^down_revision = '?(\w+)'?", source, re.M).group(1)
        assert re.fullmatch(r"[0-9a-f]{12}", revision) and path.name.startswith(revision + "_"), path.name
        # Typed by hand, an id spells something: "c0ffee", "beef", "0000".
        assert not re.search(r"c0ffee|beef|dead|0000", revision), path.name
        parents[revision] = None if down == "None" else down
    assert sum(down is None for down in parents.values()) == 1
    assert len(set(parents.values())) == len(parents), "two revisions share a parent: the history branches"
