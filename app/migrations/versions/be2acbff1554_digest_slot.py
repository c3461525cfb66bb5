"""digest_slot: the period of a target's digest, claimed in one statement

A target gets at most one gathering of digests per DIGEST_AFTER seconds (or
a day). It was checked by counting the target's digests before making one,
so two workers gathering at once could both count none. Now each gathering
claims the period by one conditional upsert of the target's row here
(app/digests.py). The rows are seeded from the digests already made, so a
target given one just before the upgrade keeps its period.

Revision ID: be2acbff1554
Revises: ff7c44e21ed9
Create Date: 2026-12-03 07:55:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'be2acbff1554'
down_revision = 'ff7c44e21ed9'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'digest_slot',
        sa.Column('campaign', sa.String(length=64), nullable=False),
        sa.Column('target_key', sa.String(length=320), nullable=False),
        sa.Column('last_gathered_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('campaign', 'target_key'),
    )
    op.execute("INSERT INTO digest_slot (campaign, target_key, last_gathered_at) "
               "SELECT campaign, target_key, MAX(created_at) FROM delivery WHERE kind = 'digest' "
               "GROUP BY campaign, target_key")


def downgrade():
    # The digests themselves stay; a count of them was the rule before this revision.
    op.drop_table('digest_slot')
