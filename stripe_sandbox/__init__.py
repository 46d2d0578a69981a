"""Offline Stripe sandbox for development, the offline demo and tests.

`python -m stripe_sandbox` runs localstripe (a stateful Stripe API double)
with what the portal needs and localstripe lacks (DESIGN.md section 8):
`patches` adjusts its resources (confirming with a payment method, declines,
3-D Secure, API-version shapes, events), `connect` adds Stripe Connect
(accounts, account links and an onboarding page, transfers, reversals),
`events` the events list and webhook deliveries (retries, test hooks),
`server` its HTTP app (idempotency keys, publishable-key calls, CORS, the
Stripe.js double `stripe-js-double.js`). `testing` starts one for tests of
other modules.

Importing this package imports nothing else, so that `testing` stays light.
"""
