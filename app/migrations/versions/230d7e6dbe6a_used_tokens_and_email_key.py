"""abuse: spent one-time tokens, the normalised email of each signature

Revision ID: 230d7e6dbe6a
Revises: f0219f332de5
Create Date: 2026-11-28 20:02:59.431602

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '230d7e6dbe6a'
down_revision = 'f0219f332de5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('used_token',
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('nonce')
    )
    with op.batch_alter_table('used_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_used_token_expires_at'), ['expires_at'], unique=False)

    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_key', sa.String(length=320), nullable=False, server_default=''))
        batch_op.create_index('ix_signature_campaign_email_key', ['campaign', 'email_key'], unique=False)
    # Rows signed before this revision: lower case is the part of
    # app.spam.normalise_email that SQL can do; the code is not imported here
    # because a migration must keep doing what it did when it was written.
    op.execute("UPDATE signature SET email_key = lower(email)")


def downgrade():
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.drop_index('ix_signature_campaign_email_key')
        batch_op.drop_column('email_key')

    with op.batch_alter_table('used_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_used_token_expires_at'))

    op.drop_table('used_token')
