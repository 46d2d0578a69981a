"""The benchmarks' own PostgreSQL databases: created fresh, dropped at the end."""

import psycopg
from psycopg import sql


def plain_url(base: str, dbname: str) -> str:
    """libpq URL for psycopg (no SQLAlchemy driver suffix)."""
    return f"{base.rstrip('/')}/{dbname}"


def drop_database(base: str, dbname: str) -> None:
    with psycopg.connect(plain_url(base, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(dbname)))


def recreate_database(base: str, dbname: str) -> None:
    drop_database(base, dbname)
    with psycopg.connect(plain_url(base, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
