"""The back office's figures: sales, fees, refunds and payments per period and currency, read
from the ledger's daily rollups (portal/ledger/rollups.py)."""
