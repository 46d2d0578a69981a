"""payments: when reconciliation last compared their refunds

A refund made at Stripe (its dashboard, another system) whose webhook was lost stayed unknown:
the remainder was too high and the vendor's next payout too. Reconciliation now compares the
refunds of recently paid payments in turns; this column is each payment's turn (NULL: never
compared, first in line), indexed over succeeded payments only.

Revision ID: 20965cdb9cda
Revises: a8ae4cbab776
Create Date: 2026-12-05 12:58:28.386975

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '20965cdb9cda'
down_revision = 'a8ae4cbab776'
branch_labels = None
depends_on = None

SUCCEEDED = sa.text("status = 'succeeded'")


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refunds_checked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_payments_refunds_checked', ['refunds_checked_at'], unique=False, postgresql_where=SUCCEEDED, sqlite_where=SUCCEEDED)


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_refunds_checked', postgresql_where=SUCCEEDED, sqlite_where=SUCCEEDED)
        batch_op.drop_column('refunds_checked_at')
