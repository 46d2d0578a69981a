"""split lines: transfer reversals of refunds after a payout

With REFUND_AFTER_PAYOUT=reverse, a refund line whose sale was already paid out is taken back
from the vendor's transfer (a Stripe transfer reversal); a new line kind, "reversal", records
it and points at the refund line it settles (one at most: unique). The kind column grows from
6 to 8 characters. Downgrading deletes the reversal lines (their refund lines are then
carried into the next payouts again, as with carry).

Revision ID: dc88b30ee2cf
Revises: 9aeeabd36b75
Create Date: 2026-12-05 13:42:08.047012

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'dc88b30ee2cf'
down_revision = '9aeeabd36b75'
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('sale', 'refund')"
NEW_KINDS = "kind IN ('sale', 'refund', 'reversal')"


def upgrade():
    with op.batch_alter_table('split_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reverses_line_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('stripe_reversal_id', sa.String(length=255), nullable=True))
        batch_op.drop_constraint(op.f('ck_split_lines_split_kind'), type_='check')
        batch_op.alter_column('kind', existing_type=sa.String(length=6), type_=sa.String(length=8),
                              existing_nullable=False)
        batch_op.create_check_constraint(op.f('ck_split_lines_split_kind'), NEW_KINDS)
        batch_op.create_unique_constraint(batch_op.f('uq_split_lines_reverses_line_id'), ['reverses_line_id'])
        batch_op.create_foreign_key(batch_op.f('fk_split_lines_reverses_line_id_split_lines'), 'split_lines', ['reverses_line_id'], ['id'])


def downgrade():
    op.execute(sa.text("DELETE FROM split_lines WHERE kind = 'reversal'"))
    with op.batch_alter_table('split_lines', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_split_lines_reverses_line_id_split_lines'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_split_lines_reverses_line_id'), type_='unique')
        batch_op.drop_constraint(op.f('ck_split_lines_split_kind'), type_='check')
        batch_op.alter_column('kind', existing_type=sa.String(length=8), type_=sa.String(length=6),
                              existing_nullable=False)
        batch_op.create_check_constraint(op.f('ck_split_lines_split_kind'), OLD_KINDS)
        batch_op.drop_column('stripe_reversal_id')
        batch_op.drop_column('reverses_line_id')
