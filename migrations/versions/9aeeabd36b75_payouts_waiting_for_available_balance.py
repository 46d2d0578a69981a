"""payouts waiting for available balance

A transfer Stripe refuses for lack of available balance leaves the payout pending with
waiting_since set; it is sent again automatically once the balance covers it.

Revision ID: 9aeeabd36b75
Revises: 5e72f2b9af96
Create Date: 2026-12-05 13:37:34.203893

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '9aeeabd36b75'
down_revision = '5e72f2b9af96'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('waiting_since', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_column('waiting_since')
