"""The ledger: payments, their vendor split lines and the open payouts that hold vendors'
balances (models.py), how a sale and its refunds are split (splits.py) and what a vendor's
balance is (balances.py); what checkout, refunds and payouts read and write."""
