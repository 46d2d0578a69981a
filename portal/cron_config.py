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
