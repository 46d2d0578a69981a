#!/usr/bin/env bash
# `make run`: migrate, seed the demo (with a history of payments made in the sandbox), start
# the Stripe sandbox, the web server and (with REDIS_URL) a worker; print the URL and the
# logins. Ctrl-C stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
export FLASK_APP=wsgi
PORT="${PORT:-3006}"
SANDBOX_PORT="${SANDBOX_PORT:-8420}"
# Quiet unless asked: INFO or DEBUG also show requests, webhooks and Stripe calls.
export LOG_LEVEL="${LOG_LEVEL:-WARNING}"
PY=.venv/bin/python

pids=()
stop() { trap - INT TERM EXIT; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop INT TERM EXIT

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
  $PY -m stripe_sandbox --port "$SANDBOX_PORT" --log-level "$LOG_LEVEL" \
      --webhook-url "http://127.0.0.1:${PORT}/api/payments/webhook" \
      --webhook-secret "${STRIPE_WEBHOOK_SECRET:-whsec_sandbox}" \
      --connect-webhook-secret "${STRIPE_CONNECT_WEBHOOK_SECRET:-whsec_sandbox_connect}" \
      --funds-delay "${SANDBOX_FUNDS_DELAY:-60}" &
  pids+=($!)
  # seed-demo makes its history of payments there: wait until it answers (any answer).
  for _ in $(seq 50); do
    $PY -c "import urllib.request as u, urllib.error as e
try: u.urlopen('${STRIPE_API_BASE}/v1/balance', timeout=1)
except e.HTTPError: pass" 2>/dev/null && break
    sleep 0.2
  done
fi

.venv/bin/flask db upgrade
logins=$(.venv/bin/flask seed-demo)

if [ -n "${REDIS_URL:-}" ]; then
  .venv/bin/flask worker &
  pids+=($!)
fi
.venv/bin/gunicorn --bind "127.0.0.1:${PORT}" --workers 2 --threads 4 wsgi:app &
pids+=($!)

for _ in $(seq 50); do
  $PY -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:${PORT}/healthz', timeout=1)" 2>/dev/null && break
  sleep 0.2
done
cat <<MSG

  ShopSphere Payments is running: http://127.0.0.1:${PORT}/
  ${logins}
  Test card: 4242 4242 4242 4242, any future expiry, any CVC (3-D Secure: 4000 0027 6000 3184).
  Press Ctrl-C to stop.

MSG
wait -n "${pids[@]}"
