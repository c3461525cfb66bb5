"""delivery.note: cap waits and receipt notes leave last_error, which then holds errors only

``last_error`` held three things: errors, the TARGET_HOURLY_CAP's "waiting:
… had N letters in the last hour" and a backend's receipt note on sent
letters, so ``clamor deliveries`` and the dashboard listed cap waits as
errors. The two that are not errors move to the new ``note`` column.

Revision ID: 277cc0093619
Revises: f1e139258baf
Create Date: 2026-12-02 00:55:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '277cc0093619'
down_revision = 'f1e139258baf'
branch_labels = None
depends_on = None

#: The texts that are notes, not errors: a cap wait (a pending letter's) and
#: a receipt note (what a sent letter's last_error can only be). substr, not
#: LIKE: the same on SQLite and PostgreSQL, with no pattern characters to escape.
_NOTES = "last_error != '' AND (substr(last_error, 1, 9) = 'waiting: ' OR status = 'sent')"


def upgrade():
    op.add_column('delivery', sa.Column('note', sa.Text(), nullable=False, server_default=''))
    # The totals triggers do not run: no figure's input changes.
    op.execute(f"UPDATE delivery SET note = last_error, last_error = '' WHERE {_NOTES}")


def downgrade():
    op.execute("UPDATE delivery SET last_error = note WHERE note != '' AND last_error = ''")
    # Not in a batch: a batch copies the table on SQLite, losing its triggers
    # and partial index. SQLite drops a column in place since 3.35.
    op.drop_column('delivery', 'note')
