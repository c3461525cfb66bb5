"""the dashboard's share of edited letters: an ``edited`` running total

The triggers are made again from app/totals.py, now with the ``edited``
figure (accepted signatures whose letter is in the supporter's own words),
and every figure is recounted once so the new one starts true.

Revision ID: f32d45b4023c
Revises: 60a79b84987f
Create Date: 2026-12-02 04:30:00.000000

"""
from alembic import op

from app import totals

# revision identifiers, used by Alembic.
revision = 'f32d45b4023c'
down_revision = '60a79b84987f'
branch_labels = None
depends_on = None


def upgrade():
    connection = op.get_bind()
    totals.drop_triggers(connection)
    totals.install_triggers(connection)
    totals.recount(connection)


def downgrade():
    # The figure stays, and the triggers keep it: the older code never reads it.
    pass
