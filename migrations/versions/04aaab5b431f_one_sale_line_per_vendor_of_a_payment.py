"""one sale line per vendor of a payment

On SQLite two settles of the same success (status poll and webhook) could both record the
sale: the code now takes SQLite's write lock first, and the database refuses a second sale
line for a vendor of a payment. A database that already holds such duplicates stops the
upgrade with the payments to look at (money lines are never deleted by a migration).

Revision ID: 04aaab5b431f
Revises: 594d8f59ae22
Create Date: 2026-11-27 08:47:09.418127

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '04aaab5b431f'
down_revision = '594d8f59ae22'
branch_labels = None
depends_on = None

SALE = sa.text("kind = 'sale'")


def upgrade():
    doubled = op.get_bind().execute(sa.text(
        "SELECT DISTINCT payment_id FROM split_lines WHERE kind = 'sale' "
        "GROUP BY payment_id, vendor_id HAVING count(*) > 1")).scalars().all()
    if doubled:
        raise RuntimeError(
            "split_lines holds more than one sale line for a vendor of these payments; "
            "correct them (and the payouts they are in) before upgrading: "
            + ", ".join(str(p) for p in doubled))
    with op.batch_alter_table('split_lines', schema=None) as batch_op:
        batch_op.create_index('uq_split_lines_sale', ['payment_id', 'vendor_id'], unique=True, postgresql_where=SALE, sqlite_where=SALE)


def downgrade():
    with op.batch_alter_table('split_lines', schema=None) as batch_op:
        batch_op.drop_index('uq_split_lines_sale', postgresql_where=SALE, sqlite_where=SALE)
