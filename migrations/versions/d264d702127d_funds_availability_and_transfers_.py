"""funds availability and the transfers capability

Payout runs pay a sale line only once Stripe has made its payment's funds available (a
transfer needs available balance; card funds stay pending for days): payments keep the
charge's available_on, and each sale line a copy for the run's set-based query (indexed with
the payout, to find the few lines a run leaves open). Lines written before this have none and
stay payable at once, as before.

A vendor is payable when the account's `transfers` capability is active (what Stripe checks),
not when payouts_enabled (the account's own payouts to its bank). Existing accounts start from
payouts_enabled, the best there is until their next account.updated or onboarding return
mirrors the capability itself.

Revision ID: d264d702127d
Revises: 04aaab5b431f
Create Date: 2026-12-05 08:20:27.086932

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd264d702127d'
down_revision = '04aaab5b431f'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('funds_available_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('split_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('available_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_split_lines_payout_available', ['payout_id', 'available_at'], unique=False)

    with op.batch_alter_table('vendor_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transfers_active', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute("UPDATE vendor_accounts SET transfers_active = payouts_enabled")


def downgrade():
    with op.batch_alter_table('vendor_accounts', schema=None) as batch_op:
        batch_op.drop_column('transfers_active')

    with op.batch_alter_table('split_lines', schema=None) as batch_op:
        batch_op.drop_index('ix_split_lines_payout_available')
        batch_op.drop_column('available_at')

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('funds_available_at')
