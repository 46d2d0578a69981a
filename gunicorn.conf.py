"""gunicorn settings read from the working directory by every gunicorn of the portal.

Two pools run with this file (docs/operations.md, "Processes"; docker-compose.yml):

- web, `gunicorn wsgi:app` (the image's CMD: port $PORT, 3006; $WEB_CONCURRENCY workers);
- webhook intake, `gunicorn wsgi_webhooks:app` (port 3007 in compose; $WEBHOOK_CONCURRENCY
  workers): Stripe's deliveries only, so that none waits behind web requests that wait on
  Stripe (issue 17, item 9). The proxy sends /api/payments/webhook there.

Both use the settings below, with sync workers, about one per core. Intake is CPU-bound, a few
milliseconds a delivery: on the 2-core bench machine neither gthread threads nor more workers
than cores brought it closer to the floor (bench/webhook_isolation.py, bench/README.md). The
timeout is for web (intake never calls Stripe); intake does not come near it.

The access log leaves out query strings and referers: Stripe.js returns customers to
/checkout/<order>/complete?payment_intent_client_secret=..., and secrets stay out of logs. The
path and User-Agent it writes come from the client: their control characters are escaped by
the portal's log record factory (portal/hygiene.py), so they cannot forge a line.

Every response carries `Server: gunicorn`: gunicorn 27 writes it from a module constant
(gunicorn/http/wsgi.py, Response.default_headers) and has no setting to drop or change it, so
the proxy in front drops it (README.md "Configuration", TRUSTED_PROXY_HOPS). Patching
gunicorn's internals here would break silently with its next release.
"""

import os

# LOG_LEVEL (README "Configuration") is gunicorn's level too; the access log is written at
# INFO and DEBUG only, as its lines are INFO records: `make run` logs at WARNING and shows
# none. A value the portal refuses stops it at start (portal/config.py): INFO meanwhile.
_level = os.environ.get("LOG_LEVEL", "").strip().lower() or "info"
loglevel = _level if _level in ("debug", "info", "warning", "error", "critical") else "info"
accesslog = "-" if loglevel in ("debug", "info") else None
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'
# A request may wait on Stripe (2 tries of at most 10 s, stripe_gateway.py): stay above that.
timeout = 60
# The runtime control socket is not used; without a writable $HOME it only logs errors.
control_socket_disable = True


def post_worker_init(worker):
    """The app is loaded: move what it allocated at start out of the garbage collector's way.

    Importing and building the portal leaves ~156,000 long-lived objects (modules, classes,
    SQLAlchemy's metadata...). Without this, every full collection walks all of them: about
    100 ms on the 2-core bench machine, roughly once per 2,000 webhook requests, so a latency
    spike for the requests behind it and ~2 % of the CPU (bench/webhooks.py). Objects made
    later are collected as before.
    """
    import gc

    gc.collect()
    gc.freeze()
