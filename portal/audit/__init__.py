"""The audit log of money decisions: written in the caller's transaction, only ever added to."""
