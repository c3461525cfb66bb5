"""totals triggers run only when a figure's inputs change: a worker's claim touches no figure row

A worker's claim moves letters from pending to sending, one figure
("queued"), yet the update trigger ran on every status change and wrote
-1 and +1 to that figure. Two workers claiming on PostgreSQL each locked
figure rows in the order of their own letters and could deadlock. The
triggers are made again from app/totals.py, which now compares the
figures' inputs.

Revision ID: f1e139258baf
Revises: 7a71cfb84b95
Create Date: 2026-12-02 00:30:00.000000

"""
from alembic import op

from app import totals

# revision identifiers, used by Alembic.
revision = 'f1e139258baf'
down_revision = '7a71cfb84b95'
branch_labels = None
depends_on = None


def upgrade():
    # The totals stay true: both sets of triggers count the same way, and
    # the swap is one transaction.
    connection = op.get_bind()
    totals.drop_triggers(connection)
    totals.install_triggers(connection)


def downgrade():
    # The triggers of 7a71cfb84b95 differ only in running for claims too;
    # the current ones count the same, so they stay.
    pass
