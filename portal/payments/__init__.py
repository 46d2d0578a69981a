"""Payments: checkout, status, history and the Payment record."""
