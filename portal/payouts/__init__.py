"""Vendors: Stripe Connect accounts, payout runs and transfers, the vendor dashboard."""
