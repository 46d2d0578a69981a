"""payments: drop the unused notes column

Nothing ever wrote or read ``payments.notes`` (a refund request's notes are its own column).
Alembic's batch mode rebuilds the table on SQLite; downgrading adds the column back, empty.

Also ``outbox_messages.retried_at``: an admin's last "Try again" of a given-up message, from
which its new 24 hours of attempts run. It used to rewrite ``created_at`` for that, which
then no longer said when the message was written. Empty for existing messages (their 24
hours run from created_at, as before).

Revision ID: a8ae4cbab776
Revises: d264d702127d
Create Date: 2026-12-05 11:29:20.057852

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a8ae4cbab776'
down_revision = 'd264d702127d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retried_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('notes')


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notes', sa.String(length=500), nullable=True))

    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_column('retried_at')
