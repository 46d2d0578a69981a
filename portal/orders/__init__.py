"""Orders and their items (each item owned by a vendor)."""
