"""Stripe webhooks: verified intake, the event store and one handler per event type."""
