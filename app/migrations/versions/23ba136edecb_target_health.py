"""target_health: bounces in a row, suspension and complaints per target address

A target address with TARGET_BOUNCE_LIMIT hard bounces in a row is
suspended: its letters are held (status held, like a signature's, so the
running totals count them as held with no new trigger) until
``clamor targets resume``. The new status ``cancelled`` needs no trigger
change either: the figure ``letters:<status>`` is made from the status itself.

Revision ID: 23ba136edecb
Revises: bf003a93384f
Create Date: 2026-12-02 03:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '23ba136edecb'
down_revision = 'bf003a93384f'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'target_health',
        sa.Column('target_key', sa.String(length=320), nullable=False),
        sa.Column('bounces_in_row', sa.Integer(), nullable=False),
        sa.Column('last_bounce', sa.Text(), nullable=False),
        sa.Column('last_bounce_at', sa.DateTime(), nullable=True),
        sa.Column('suspended_at', sa.DateTime(), nullable=True),
        sa.Column('complaint', sa.Text(), nullable=False),
        sa.Column('complained_at', sa.DateTime(), nullable=True),
        sa.Column('alerted_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('target_key'),
    )


def downgrade():
    # Cancelled letters have no status to go back to before this revision: they stay cancelled.
    op.drop_table('target_health')
