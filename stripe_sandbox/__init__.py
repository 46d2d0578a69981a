"""Offline Stripe for development, the offline demo and tests (never in production).

`python -m stripe_sandbox` serves the Stripe API endpoints the portal and Stripe.js use, with
the shapes and checks of the API version the pinned stripe-python sends, and sends signed
webhooks. One module per Stripe resource, installed in one place (`app.MODULES`):

- `payment_methods`: customers and their saved cards; `payment_intents`: payments and the
  charges they make; `setup_intents`: saving cards; `refunds`; `balance`: pending and
  available funds, balance transactions; `connect`: connected accounts, account links and
  onboarding, transfers and reversals; `events`: events, webhook endpoints and deliveries;
  `stripe_js`: the Stripe.js double (`stripe-js-double.js`) and the 3-D Secure page;
- `contract`: the pinned SDK's parameter and resource types as checks, applied to every
  request and every answer (`core.api`); `cards`: Stripe's test cards; `core`: the store,
  errors, parameters, lists, expansion; `app`: the HTTP server and `main`;
- `testing`: starts one for tests of other modules (imports nothing of the above).

Importing this package imports nothing else, so that `testing` stays light.
"""
