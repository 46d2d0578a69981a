"""Reconciliation: the portal's records checked against Stripe's, and backfills."""
