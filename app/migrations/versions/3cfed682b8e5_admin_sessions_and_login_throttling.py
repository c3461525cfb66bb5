"""admin sessions on the server, login throttling per account

Admin sessions become rows (the cookie holds only a random id, the row its
SHA-256), so logout, removing an organiser and expiry end them by deleting the
row. Organisers get a count of wrong passwords in a row and the time before
which no further attempt is checked. Sessions from before this revision were
only signed cookies: their holders log in again.

Revision ID: 3cfed682b8e5
Revises: 55f281023dea
Create Date: 2026-11-29 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '3cfed682b8e5'
down_revision = '55f281023dea'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('admin_session',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('organiser_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['organiser_id'], ['organiser.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id_hash')
    )
    with op.batch_alter_table('admin_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_session_organiser_id'), ['organiser_id'], unique=False)

    with op.batch_alter_table('organiser', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_logins', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(), nullable=True))


def downgrade():
    # Sessions first: on SQLite, dropping columns copies the organiser table,
    # which the sessions' foreign key points at.
    with op.batch_alter_table('admin_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_session_organiser_id'))

    op.drop_table('admin_session')

    with op.batch_alter_table('organiser', schema=None) as batch_op:
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_logins')
