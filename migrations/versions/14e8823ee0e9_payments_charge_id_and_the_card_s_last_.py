"""payments: charge id, and the card's last four indexed

The admin payment search (/admin/payments) finds a payment by its charge id (ch_...) and by a
card's last four digits within a date range. Payments paid before this revision have no
charge id until reconciliation or a webhook settles them again (they are final: they are
found by their PaymentIntent id instead).

Revision ID: 14e8823ee0e9
Revises: dc88b30ee2cf
Create Date: 2026-12-05 14:41:33.419939

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '14e8823ee0e9'
down_revision = 'dc88b30ee2cf'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe_charge_id', sa.String(length=255), nullable=True))
        batch_op.create_index('ix_payments_last4_created', ['card_last4', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_stripe_charge_id'), ['stripe_charge_id'], unique=False)


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_stripe_charge_id'))
        batch_op.drop_index('ix_payments_last4_created')
        batch_op.drop_column('stripe_charge_id')
