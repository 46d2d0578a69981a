"""payments: when reconciliation next re-reads a payment

Reconciliation used to take the oldest payments not final, by updated_at, every run: once
more abandoned checkouts than a run checks were waiting (they never change), a paid payment
whose webhook was lost was never reached. Each checked payment now gets a due time.

Revision ID: 594d8f59ae22
Revises: a7f8f04a9b45
Create Date: 2026-11-27 08:27:04.296638

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '594d8f59ae22'
down_revision = 'a7f8f04a9b45'
branch_labels = None
depends_on = None

NOT_FINAL = sa.text("status NOT IN ('succeeded', 'canceled')")


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reconcile_due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_payments_reconcile_due', ['reconcile_due_at', 'updated_at'], unique=False, postgresql_where=NOT_FINAL, sqlite_where=NOT_FINAL)


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_reconcile_due', postgresql_where=NOT_FINAL, sqlite_where=NOT_FINAL)
        batch_op.drop_column('reconcile_due_at')
