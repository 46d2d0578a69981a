"""order items: a vendor's with their orders

The admin search by vendor takes the order ids of a vendor of up to 10,000 orders and
fetches those payments (admin/search.py, _sold_by): order_items (vendor_id, order_id) gives
them without reading the items. It replaces (vendor_id), which it serves in every lookup by
vendor. Before (bench/admin_search.py, 1,000,000 payments): the planner walked the payments
newest first and tested each one's order, 72 ms for the vendor ranked 30th (7,700 orders)
and 121 ms for the 60th (3,900); by the ids, 29 and 22 ms.

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
