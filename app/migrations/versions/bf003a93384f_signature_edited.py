"""signature.edited and signature.subject_choice: the letter's own words, and which subject variant

``subject_choice`` is a random number drawn at signing: the signature's
letters take variant ``subject_choice % len(subjects)`` of the campaign's
subjects, on every letter and retry. Earlier signatures get 0: the first
subject, which is the ``subject`` they were sent with.

A letter in the campaign's own words may go to a target in the target's
language; one in the supporter's words goes as written, labelled in the
language it was written in. Signatures stored before this column cannot be
told apart any more (the campaign text may have changed since): they count
as edited, so each is sent as its supporter wrote it.

Revision ID: bf003a93384f
Revises: 1142be08ab85
Create Date: 2026-12-02 04:10:00.000000

"""
import sqlalchemy as sa
from alembic import op

from app import totals

# revision identifiers, used by Alembic.
revision = 'bf003a93384f'
down_revision = '1142be08ab85'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('signature', sa.Column('edited', sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column('signature', sa.Column('subject_choice', sa.Integer(), nullable=False, server_default='0'))


def downgrade():
    # The totals triggers may name edited (f32d45b4023c): made again without it.
    connection = op.get_bind()
    totals.drop_triggers(connection)
    # Not in a batch: a batch copies the table on SQLite, losing its triggers.
    op.drop_column('signature', 'subject_choice')
    op.drop_column('signature', 'edited')
    totals.install_triggers(connection)
