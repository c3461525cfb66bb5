"""delivered and bounced letters: the "sent per day" figure counts them as sent

Letters gain the statuses delivered and bounced (a provider's report after
sending). The figure ``letters:<status>`` follows by itself, but
``sent_on`` counted status 'sent' only, so a letter delivered today would
leave "sent today". The triggers are made again from app/totals.py and the
figures recounted from the rows.

Revision ID: 1142be08ab85
Revises: 277cc0093619
Create Date: 2026-12-02 01:45:00.000000

"""
from alembic import op

from app import totals

# revision identifiers, used by Alembic.
revision = '1142be08ab85'
down_revision = '277cc0093619'
branch_labels = None
depends_on = None


def upgrade():
    # One transaction: the figures are never seen half recounted.
    connection = op.get_bind()
    totals.drop_triggers(connection)
    totals.install_triggers(connection)
    totals.recount(connection)


def downgrade():
    # The new triggers count what the old ones did for every status that
    # existed before; they stay.
    pass
