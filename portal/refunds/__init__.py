"""Refunds: requests, admin approval, execution at Stripe and the audit log."""
