"""outbox kinds refund_email and admin_alert

Customers are told when a refund succeeds or fails (refund_email), and admins are alerted of a
refund that failed after it had succeeded (admin_alert). The kind is a non-native enum: only
its CHECK constraint changes. Downgrading deletes the messages of the two new kinds.

Revision ID: 5e72f2b9af96
Revises: 20965cdb9cda
Create Date: 2026-12-05 13:35:07.250387

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '5e72f2b9af96'
down_revision = '20965cdb9cda'
branch_labels = None
depends_on = None


OLD_KINDS = "kind IN ('order_notification', 'receipt_email')"
NEW_KINDS = "kind IN ('order_notification', 'receipt_email', 'refund_email', 'admin_alert')"


def _kinds(check):
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_outbox_messages_outbox_kind'), type_='check')
        batch_op.create_check_constraint(op.f('ck_outbox_messages_outbox_kind'), check)


def upgrade():
    _kinds(NEW_KINDS)


def downgrade():
    op.execute(sa.text("DELETE FROM outbox_messages WHERE kind IN ('refund_email', 'admin_alert')"))
    _kinds(OLD_KINDS)
