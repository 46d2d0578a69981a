"""Saved cards: one Stripe customer per user, their payment methods, the SetupIntent flow."""
