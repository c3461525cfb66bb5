"""running totals for the dashboard, kept by triggers; indexes for the supporters search

The table ``figure`` holds every figure of the dashboard (signatures per
status, day, country and language, opt-ins; letters per target and status;
letters sent per day), and triggers on ``signature`` and ``delivery`` keep it
true in the transaction that changes a row (app/totals.py). The totals are
counted once from the rows that exist. The admin search finds a prefix of
lower(name), lower(email) or lower(organisation) through an index each, and
the dashboard the newest error per target through a small partial index.

Revision ID: 7a71cfb84b95
Revises: 3cfed682b8e5
Create Date: 2026-12-01 22:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

from app import totals

# revision identifiers, used by Alembic.
revision = '7a71cfb84b95'
down_revision = '3cfed682b8e5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('figure',
    sa.Column('campaign', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=320), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('campaign', 'name', 'key')
    )
    for column in ('name', 'email', 'organisation'):
        op.create_index(f'ix_signature_search_{column}', 'signature',
                        ['campaign', 'status', sa.text(f'lower({column})')])
    where = sa.text("last_error != '' AND status IN ('failed', 'pending')")
    op.create_index('ix_delivery_last_error', 'delivery', ['campaign', 'target_key', 'id'],
                    sqlite_where=where, postgresql_where=where)
    connection = op.get_bind()
    # Triggers first, then the count, in one transaction: nothing written
    # meanwhile is counted twice or missed.
    totals.install_triggers(connection)
    totals.recount(connection)


def downgrade():
    totals.drop_triggers(op.get_bind())
    op.drop_table('figure')
    op.drop_index('ix_delivery_last_error', table_name='delivery')
    for column in ('name', 'email', 'organisation'):
        op.drop_index(f'ix_signature_search_{column}', table_name='signature')
