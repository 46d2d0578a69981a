"""The JSON API under /api: Bearer JWT only, one error format."""
