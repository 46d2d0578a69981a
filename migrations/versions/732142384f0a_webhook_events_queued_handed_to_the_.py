"""webhook events: queued, handed to the workers by a dispatcher

With Redis the intake stores an event "received" and a worker's dispatcher queues it, marking
it "queued" (issue 17, item 9). The status is a non-native enum: only its CHECK constraint
changes. Downgrading turns "queued" events back into "received" ones (the sweeper queues
those as it did before).

Revision ID: 732142384f0a
Revises: 3be625c7cd9a
Create Date: 2026-12-05 17:09:12.104853

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '732142384f0a'
down_revision = '3be625c7cd9a'
branch_labels = None
depends_on = None


OLD = "status IN ('received', 'processed', 'ignored', 'failed')"
NEW = "status IN ('received', 'queued', 'processed', 'ignored', 'failed')"


def _statuses(check):
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_stripe_events_event_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_stripe_events_event_status'), check)


def upgrade():
    _statuses(NEW)


def downgrade():
    op.execute(sa.text("UPDATE stripe_events SET status = 'received' WHERE status = 'queued'"))
    _statuses(OLD)
