"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi ...`."""

import sys

from portal import create_app
from portal.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One line naming the variable, then stop: never start half-configured.
    sys.exit(f"configuration error: {exc}")
