"""open payouts: every split line in a payout from the start

A vendor's lines not paid yet now sit in the vendor's "open" payout (one per currency), set
when the line is written; a payout run closes open payouts instead of rewriting every line.
Existing unassigned lines are put into new open payouts here.

Revision ID: a7f8f04a9b45
Revises: 0423230a1de5
Create Date: 2026-11-27 02:54:03.295331

"""
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a7f8f04a9b45'
down_revision = '0423230a1de5'
branch_labels = None
depends_on = None

OLD_STATUSES = "status IN ('pending', 'processing', 'paid', 'failed')"
NEW_STATUSES = "status IN ('open', 'pending', 'processing', 'paid', 'failed')"
TOTALS = ('amount', 'total_sales', 'platform_fee', 'refunds', 'payment_count', 'line_count',
          'transfer_attempt')
OPEN = sa.text("status = 'open'")

payouts = sa.table(
    'payouts', sa.column('id', sa.Uuid), sa.column('vendor_id', sa.Uuid),
    sa.column('currency', sa.String), sa.column('status', sa.String),
    *(sa.column(c, sa.BigInteger) for c in TOTALS),
    sa.column('created_at', sa.DateTime(timezone=True)),
    sa.column('updated_at', sa.DateTime(timezone=True)))
split_lines = sa.table(
    'split_lines', sa.column('payout_id', sa.Uuid), sa.column('vendor_id', sa.Uuid),
    sa.column('currency', sa.String))


def upgrade():
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_payouts_payout_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_payouts_payout_status'), NEW_STATUSES)
        batch_op.alter_column('run_id',
               existing_type=sa.Uuid(),
               nullable=True)
        batch_op.create_index('uq_payouts_open', ['vendor_id', 'currency'], unique=True, postgresql_where=OPEN, sqlite_where=OPEN)

    # Lines written before this revision and not paid yet: into an open payout each.
    conn = op.get_bind()
    groups = conn.execute(sa.select(split_lines.c.vendor_id, split_lines.c.currency)
                          .where(split_lines.c.payout_id.is_(None)).distinct()).all()
    now = datetime.now(UTC)
    if groups:
        conn.execute(payouts.insert(), [
            {'id': uuid.uuid4(), 'vendor_id': vendor_id, 'currency': currency,
             'status': 'open', 'created_at': now, 'updated_at': now, **dict.fromkeys(TOTALS, 0)}
            for vendor_id, currency in groups])
        conn.execute(split_lines.update().where(split_lines.c.payout_id.is_(None)).values(
            payout_id=sa.select(payouts.c.id).where(
                payouts.c.vendor_id == split_lines.c.vendor_id,
                payouts.c.currency == split_lines.c.currency,
                payouts.c.status == 'open').scalar_subquery()))

    with op.batch_alter_table('split_lines', schema=None) as batch_op:
        batch_op.drop_index('ix_split_lines_payout')
        batch_op.drop_index('ix_split_lines_unpaid', postgresql_where=sa.text('payout_id IS NULL'), sqlite_where=sa.text('payout_id IS NULL'))
        batch_op.create_index('ix_split_lines_payout_created', ['payout_id', 'created_at'], unique=False)
        batch_op.alter_column('payout_id',
               existing_type=sa.Uuid(),
               nullable=False)


def downgrade():
    with op.batch_alter_table('split_lines', schema=None) as batch_op:
        batch_op.alter_column('payout_id',
               existing_type=sa.Uuid(),
               nullable=True)
        batch_op.drop_index('ix_split_lines_payout_created')
        batch_op.create_index('ix_split_lines_unpaid', ['vendor_id', 'currency', 'created_at'], unique=False, postgresql_where=sa.text('payout_id IS NULL'), sqlite_where=sa.text('payout_id IS NULL'))
        batch_op.create_index('ix_split_lines_payout', ['payout_id'], unique=False)

    # Open payouts become unassigned lines again.
    conn = op.get_bind()
    open_ids = sa.select(payouts.c.id).where(payouts.c.status == 'open')
    conn.execute(split_lines.update().where(split_lines.c.payout_id.in_(open_ids))
                 .values(payout_id=None))
    conn.execute(payouts.delete().where(payouts.c.status == 'open'))

    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_index('uq_payouts_open', postgresql_where=OPEN, sqlite_where=OPEN)
        batch_op.alter_column('run_id',
               existing_type=sa.Uuid(),
               nullable=False)
        batch_op.drop_constraint(op.f('ck_payouts_payout_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_payouts_payout_status'), OLD_STATUSES)
