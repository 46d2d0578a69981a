"""Issue 7 fault tests: live processes, faults injected (see conftest.py)."""
