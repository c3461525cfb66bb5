"""digests: delivery.digest_id and delivery.waiting_since, the letter status in_digest

A campaign with ``overflow = "digest"`` gathers the letters its targets' cap
held back for DIGEST_AFTER seconds (``waiting_since``) into one digest per
target (a Delivery of kind ``digest``); each gathered letter points at it
(``digest_id``) with the status ``in_digest``, and follows the digest's
status by a trigger (app/digests.py). The totals' triggers are made again:
``in_digest`` counts as queued.

Revision ID: ff7c44e21ed9
Revises: f32d45b4023c
Create Date: 2026-12-02 07:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

from app import digests, totals
from app.models import OVERFLOW_WHERE

# revision identifiers, used by Alembic.
revision = 'ff7c44e21ed9'
down_revision = 'f32d45b4023c'
branch_labels = None
depends_on = None

MEMBERS_WHERE = "digest_id IS NOT NULL"


def upgrade():
    op.add_column('delivery', sa.Column('digest_id', sa.Integer(), nullable=True))
    op.add_column('delivery', sa.Column('waiting_since', sa.DateTime(), nullable=True))
    op.create_index('ix_delivery_digest', 'delivery', ['digest_id'],
                    sqlite_where=sa.text(MEMBERS_WHERE), postgresql_where=sa.text(MEMBERS_WHERE))
    op.create_index('ix_delivery_overflow', 'delivery', ['campaign', 'target_key', 'waiting_since'],
                    sqlite_where=sa.text(OVERFLOW_WHERE), postgresql_where=sa.text(OVERFLOW_WHERE))
    connection = op.get_bind()
    totals.drop_triggers(connection)
    totals.install_triggers(connection)
    digests.install_triggers(connection)


def downgrade():
    connection = op.get_bind()
    digests.drop_triggers(connection)
    # Letters waiting in a digest that never went wait alone again.
    op.execute("UPDATE delivery SET status = 'pending' WHERE status = 'in_digest'")
    op.execute("UPDATE delivery SET status = 'cancelled' WHERE kind = 'digest' AND status IN ('pending', 'held')")
    op.drop_index('ix_delivery_overflow', table_name='delivery')
    op.drop_index('ix_delivery_digest', table_name='delivery')
    # Not in a batch: a batch copies the table on SQLite, losing its triggers.
    op.drop_column('delivery', 'waiting_since')
    op.drop_column('delivery', 'digest_id')
