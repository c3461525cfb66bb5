"""used_token.form_digest: the same form sent twice gets the first answer

A double click on Send posts the form twice. The first request stored the
signature and spent the form's one-time token; the second found the token
spent and answered "This form was sent already", which is what the browser
showed. Each spent token now keeps a keyed digest of the whole form that
spent it (app/spam.py, sent_form_digest), so the very same form sent again
is answered like the first time. Tokens spent before this revision have
none, and keep the old answer until they expire (24 hours).

Revision ID: c4d1e2f3a5b6
Revises: be2acbff1554
Create Date: 2026-12-04 04:10:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c4d1e2f3a5b6'
down_revision = 'be2acbff1554'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('used_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('form_digest', sa.String(length=64), nullable=False, server_default=''))


def downgrade():
    with op.batch_alter_table('used_token', schema=None) as batch_op:
        batch_op.drop_column('form_digest')
