"""`flask db upgrade` from empty and `flask db check` on SQLite and PostgreSQL."""

import os
import subprocess
import sys

from portal.config import ROOT


def flask(*args, database_url: str):
    env = {**os.environ, "DATABASE_URL": database_url, "PORTAL_ENV": "test"}
    env.pop("REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_sqlite_upgrade_from_empty_then_no_drift(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    up = flask("db", "upgrade", database_url=url)
    assert up.returncode == 0, up.stderr
    check = flask("db", "check", database_url=url)
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_postgresql_schema_from_migrations_has_no_drift(pg_url):
    # pg_url was built by `upgrade()` from an empty schema at the start of the session.
    check = flask("db", "check", database_url=pg_url)
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr
