"""Schedules for `rq cron portal.cron_config` (one scheduler process per deployment).

Each entry runs a portal job through `portal.jobs.run`, which gives it an app context.
"""

from rq import cron

from .jobs import run

# Events stored while Redis was down are still "received": hand them to the workers.
cron.register(run, "webhooks", args=("portal.webhooks.jobs.sweep_received",), interval=60,
              name="sweep-received-webhook-events")
# Idempotency-Key responses are kept 24 h; older ones are deleted.
cron.register(run, "default", args=("portal.api.idempotency.purge_expired",), interval=3600,
              name="purge-idempotency-keys")
# Vendor payouts: Mondays 02:00 UTC (the weekly run; a monthly PAYOUT_SCHEDULE only finds
# new lines once a month has ended, and a run with nothing to pay creates nothing).
cron.register(run, "payouts", args=("portal.payouts.cli.scheduled_run",), cron="0 2 * * 1",
              name="payout-run")
# Payouts Stripe refused for lack of available balance: sent again once it covers them (also
# on balance.available; a run with nothing waiting makes no Stripe call).
cron.register(run, "payouts", args=("portal.payouts.services.resume_waiting",), interval=600,
              name="resume-waiting-payouts")
# Reconciliation: payments, refunds and payouts that webhooks left unsettled; due outbox
# messages (retries, and those whose queueing was lost with Redis). A run stops checking
# payments after 4 minutes (the rest wait for the next run); RQ's default job timeout is 3.
cron.register(run, "default", args=("portal.reconciliation.services.scheduled_reconcile",),
              interval=300, job_timeout=600, name="reconcile")
cron.register(run, "outbox", args=("portal.outbox.services.sweep",), interval=60,
              name="sweep-outbox")
# The back office's daily rollups, summed again from the ledger for yesterday and today (they
# are kept up to date as payments settle; this repairs any drift): 00:30 UTC.
cron.register(run, "default", args=("portal.analytics.cli.rebuild_recent",), cron="30 0 * * *",
              name="rebuild-analytics")
