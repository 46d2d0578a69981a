"""The floor for bench/webhooks.py: the least a Stripe webhook endpoint can do.

Verify the Stripe-Signature with ``stripe.Webhook.construct_event`` (the SDK call the portal
makes too), insert one row into a one-table schema with plain psycopg, commit, answer 200.
Nothing else: no ORM, no queue, no app factory, no extensions, no after-request hooks.

Served by bench/webhooks.py as ``gunicorn -c gunicorn.conf.py --workers 2 --pythonpath bench
webhook_floor:app`` with FLOOR_DATABASE_URL (libpq URL of a database holding the table below)
and FLOOR_WEBHOOK_SECRET in the environment::

    CREATE TABLE floor_events (id text PRIMARY KEY, type text NOT NULL, payload json NOT NULL,
                               received_at timestamptz NOT NULL DEFAULT now())
"""

from __future__ import annotations

import os

import psycopg
import stripe
from flask import Flask, jsonify, request

SCHEMA = ("CREATE TABLE floor_events (id text PRIMARY KEY, type text NOT NULL, "
          "payload json NOT NULL, received_at timestamptz NOT NULL DEFAULT now())")
INSERT = ("INSERT INTO floor_events (id, type, payload) VALUES (%s, %s, %s) "
          "ON CONFLICT (id) DO NOTHING")

app = Flask(__name__)
_conn: psycopg.Connection | None = None  # one per gunicorn worker, opened at its first request


def _connection() -> psycopg.Connection:
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ["FLOOR_DATABASE_URL"])
    return _conn


@app.post("/api/payments/webhook")
def webhook():
    payload = request.get_data(cache=False)
    try:
        event = stripe.Webhook.construct_event(
            payload, request.headers.get("Stripe-Signature"), os.environ["FLOOR_WEBHOOK_SECRET"],
            tolerance=300)
    except (ValueError, stripe.SignatureVerificationError):
        return jsonify(error="invalid"), 400
    conn = _connection()
    conn.execute(INSERT, (event.id, event.type, payload.decode()))
    conn.commit()
    return jsonify(received=True)


@app.get("/healthz")
def healthz():
    return jsonify(ok=True)
