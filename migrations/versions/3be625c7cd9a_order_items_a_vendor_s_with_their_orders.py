"""order items: a vendor's with their orders

The admin search by vendor counts a vendor's items, hashes its orders or tests whether an
order is one of them (admin/search.py, _sold_by): order_items (vendor_id, order_id) answers
each without reading the items. It replaces (vendor_id), which it serves in every lookup by
vendor. With the search's choice of plan by the vendor's size, the vendors ranked 20th to
100th of 1,000 (11,600 to 2,300 items) went from 21-47 ms of SQL to 5-10 ms (1,000,000
payments, bench/admin_search.py).

On PostgreSQL the CREATE INDEX blocks writes to order_items while it builds.

Revision ID: 3be625c7cd9a
Revises: d133dd8a56c4
Create Date: 2026-12-05 15:51:22.570524

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '3be625c7cd9a'
down_revision = 'd133dd8a56c4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('order_items', schema=None) as batch_op:
        batch_op.create_index('ix_order_items_vendor_order', ['vendor_id', 'order_id'], unique=False)
        batch_op.drop_index(batch_op.f('ix_order_items_vendor_id'))


def downgrade():
    with op.batch_alter_table('order_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_items_vendor_id'), ['vendor_id'], unique=False)
        batch_op.drop_index('ix_order_items_vendor_order')
