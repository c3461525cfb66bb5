"""delivery.updated_at and the organisers' alarms

Each letter remembers when it last changed (``updated_at``), which the
backend alarm reads; the ``alarm`` table keeps which alarm is raised, so
organisers are emailed once per stall. Existing letters get their last
known time: sent_at, else created_at.

Revision ID: 60a79b84987f
Revises: 23ba136edecb
Create Date: 2026-12-02 03:25:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '60a79b84987f'
down_revision = '23ba136edecb'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('alarm',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('raised_at', sa.DateTime(), nullable=True),
    sa.Column('cleared_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    # Not in a batch: a batch copies the table on SQLite, losing its triggers
    # and partial index. Nullable for that reason (SQLite cannot make an added
    # column NOT NULL in place); the application always sets it.
    op.add_column('delivery', sa.Column('updated_at', sa.DateTime(), nullable=True))
    # The totals triggers do not run: no figure's input changes.
    op.execute("UPDATE delivery SET updated_at = COALESCE(sent_at, created_at)")
    op.create_index('ix_delivery_updated_at', 'delivery', ['updated_at'], unique=False)


def downgrade():
    op.drop_index('ix_delivery_updated_at', table_name='delivery')
    # In place, as 277cc0093619 drops its column (SQLite 3.35 and later).
    op.drop_column('delivery', 'updated_at')
    op.drop_table('alarm')
