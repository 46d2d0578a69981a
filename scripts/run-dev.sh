#!/usr/bin/env bash
# `make run`: start the Stripe sandbox and (without ORDER_SERVICE_URL) the order-service
# stand-in, migrate, seed the demo (with a history of payments made in the sandbox), start
# the web server and (with REDIS_URL) a worker; print the URL, the logins and the test cards
# last. Logs at WARNING unless LOG_LEVEL says otherwise. Ctrl-C stops all of it and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
export FLASK_APP=wsgi
PORT="${PORT:-3006}"
SANDBOX_PORT="${SANDBOX_PORT:-8420}"
# The stand-in's port: next to the portal's, 3005 by default (the default ORDER_SERVICE_URL's).
DEMO_ORDERS_PORT="${DEMO_ORDERS_PORT:-$((PORT - 1))}"
# Quiet unless asked: INFO or DEBUG also show requests, webhooks, Stripe calls, migrations.
LOG_LEVEL="$(tr '[:lower:]' '[:upper:]' <<<"${LOG_LEVEL:-WARNING}")"
export LOG_LEVEL
PY=.venv/bin/python

# Each child runs in a session of its own (setsid, where there is one), so that the
# terminal's Ctrl-C reaches this script only: it stops them last started first, each before
# the next (the web server finishes the webhooks it is processing while the sandbox still
# answers; before, they failed by the hundred as the sandbox died with it). Use detach in
# the background only (&): exec keeps $! the process itself.
detach() { if command -v setsid >/dev/null; then exec setsid "$@"; else exec "$@"; fi; }
pids=()
stop() {
  trap - INT TERM EXIT
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null && wait "${pids[i]}" 2>/dev/null
  done
  return 0
}
# Ctrl-C (or TERM) is how a demo ends: stop the children and exit 0, so that make does not
# report "Error 130". EXIT: a failed step stops what was started before it.
trap 'stop; echo "  Stopped."; exit 0' INT TERM
trap stop EXIT

# Waits until $1 answers HTTP (any status) while the process $2 lives, 30 s at most.
wait_for() {
  for _ in $(seq 300); do
    kill -0 "$2" 2>/dev/null || return 1
    $PY - "$1" 2>/dev/null <<'PY' && return 0
import sys, urllib.error, urllib.request
try:
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass
PY
    sleep 0.1
  done
  return 1
}
fail() { echo "make run: $*" >&2; exit 1; }
verbose() { [ "$LOG_LEVEL" = DEBUG ] || [ "$LOG_LEVEL" = INFO ]; }

if [ -z "${STRIPE_SECRET_KEY:-}" ]; then
  # The sandbox keeps nothing between runs (intents, customers, saved cards), so neither does
  # the demo database that refers to them: it starts afresh each time.
  if [ -z "${DATABASE_URL:-}" ]; then
    mkdir -p instance && rm -f instance/sandbox-demo.sqlite
    export DATABASE_URL="sqlite:///$PWD/instance/sandbox-demo.sqlite"
  fi
  export STRIPE_API_BASE="http://127.0.0.1:${SANDBOX_PORT}"
  # Connect events (vendors' accounts) go to a Connect endpoint with its own secret, as at
  # Stripe. A charge's funds become available for payouts after a minute (Stripe: days).
  detach $PY -m stripe_sandbox --port "$SANDBOX_PORT" --log-level "$LOG_LEVEL" \
      --webhook-url "http://127.0.0.1:${PORT}/api/payments/webhook" \
      --webhook-secret "${STRIPE_WEBHOOK_SECRET:-whsec_sandbox}" \
      --connect-webhook-secret "${STRIPE_CONNECT_WEBHOOK_SECRET:-whsec_sandbox_connect}" \
      --funds-delay "${SANDBOX_FUNDS_DELAY:-60}" &
  pids+=($!)
  # seed-demo makes its history of payments there: wait until it answers.
  wait_for "${STRIPE_API_BASE}/v1/balance" $! || fail "the Stripe sandbox did not start"
fi

if [ -z "${ORDER_SERVICE_URL:-}" ]; then
  # No order service: the built-in stand-in takes the outbox's payment notifications.
  detach $PY -m portal.demo_orders --port "$DEMO_ORDERS_PORT" &
  pids+=($!)
  export ORDER_SERVICE_URL="http://127.0.0.1:${DEMO_ORDERS_PORT}"
  wait_for "${ORDER_SERVICE_URL}/healthz" $! || fail "the order-service stand-in did not start"
  orders="the built-in stand-in, ${ORDER_SERVICE_URL}"
else
  orders="${ORDER_SERVICE_URL}"
fi

# Alembic's lines only when asked; on failure, all of them.
if verbose; then
  .venv/bin/flask db upgrade
elif ! migrated=$(.venv/bin/flask db upgrade 2>&1); then
  printf '%s\n' "$migrated" >&2
  fail "migrating the database failed"
fi
seeded=$(.venv/bin/flask seed-demo)

if [ -n "${REDIS_URL:-}" ]; then
  detach .venv/bin/flask worker &
  pids+=($!)
fi
detach .venv/bin/gunicorn --bind "127.0.0.1:${PORT}" --workers 2 --threads 4 wsgi:app &
pids+=($!)
wait_for "http://127.0.0.1:${PORT}/healthz" $! || fail "the web server did not start"

if verbose; then
  logs="Logging at ${LOG_LEVEL}."
else
  logs="Logging at ${LOG_LEVEL}; LOG_LEVEL=INFO make run shows requests, webhooks, Stripe calls."
fi
# The last lines until something goes wrong; the cards as the sandbox treats them
# (stripe_sandbox/cards.py), as Stripe does.
cat <<MSG
Order-service notifications go to ${orders}.
${logs}

  ShopSphere Payments is running: http://127.0.0.1:${PORT}/

$(sed 's/^/  /' <<<"$seeded")

  Test cards (any future expiry, any CVC):
    4242 4242 4242 4242  succeeds
    4000 0027 6000 3184  asks for 3-D Secure: complete it and it succeeds; fail it, not paid
    4000 0000 0000 0341  declined when charged (it can be saved as a card; paying then fails)

  Press Ctrl-C to stop.

MSG
# Until Ctrl-C, or until one of them ends by itself (then the others are stopped).
set +e
wait -n "${pids[@]}"
status=$?
echo "make run: a process it started ended (status $status); stopping the others" >&2
exit "$status"
