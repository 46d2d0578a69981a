"""admin search indexes: payments by time and by amount, e-mail prefixes, order items with their vendor

What the admin payment search (/admin/payments) and its CSV export need at 1,000,000
payments (bench/admin_search.py, where the plans before and after are):

- payments (created_at, id): every list is newest first with a keyset cursor; without it the
  unfiltered page, status + currency + dates, vendor, amount range and refunded searches were
  a Seq Scan of payments (150-900 ms, 5 s for the largest vendor), and the export sorted the
  whole table for each batch;
- payments (currency, amount, created_at): an exact amount ("587.52 EUR") was a Seq Scan of
  payments (153 ms), now a few index entries;
- users (email text_pattern_ops): under a collation other than C (the bench machine's is
  C.UTF-8) PostgreSQL reads a btree for LIKE 'prefix%' only with this operator class (the
  unique index on email is no use to it): the e-mail search was a Seq Scan of users. SQLite gets a second plain index on
  email, unused by its case-insensitive LIKE, so that both dialects have one schema;
- order_items (order_id, vendor_id) instead of (order_id): which vendors an order has,
  without reading the items (the vendor filter tests each payment's order; the export lists
  each order's vendors). It serves every lookup by order_id the old index served.

On PostgreSQL each CREATE INDEX blocks writes to its table while it builds (seconds at a
million rows); run it when payments are quiet.

Revision ID: d133dd8a56c4
Revises: 14e8823ee0e9
Create Date: 2026-12-05 15:33:59.741345

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd133dd8a56c4'
down_revision = '14e8823ee0e9'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('order_items', schema=None) as batch_op:
        batch_op.create_index('ix_order_items_order_vendor', ['order_id', 'vendor_id'], unique=False)
        batch_op.drop_index(batch_op.f('ix_order_items_order_id'))

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index('ix_payments_created', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_payments_currency_amount_created', ['currency', 'amount', 'created_at'], unique=False)

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index('ix_users_email_prefix', ['email'], unique=False, postgresql_ops={'email': 'text_pattern_ops'})


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('ix_users_email_prefix')

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_currency_amount_created')
        batch_op.drop_index('ix_payments_created')

    with op.batch_alter_table('order_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_items_order_id'), ['order_id'], unique=False)
        batch_op.drop_index('ix_order_items_order_vendor')
