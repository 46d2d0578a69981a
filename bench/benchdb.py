"""The benchmarks' own PostgreSQL databases: created fresh, dropped at the end."""

import os

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


def copy_rows(conn: psycopg.Connection, table, rows, columns: list[str] | None = None) -> None:
    """COPY ``rows`` (tuples in the order of ``columns``, default: every column of the
    SQLAlchemy core ``table``) into the table of that name. ``table`` may also be a plain
    table name; ``columns`` is then required."""
    cols = columns or [c.name for c in table.columns]
    name = table if isinstance(table, str) else table.name
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, cols)))
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for row in rows:
            copy.write_row(row)


def check_foreign_keys(conn: psycopg.Connection, tables, names) -> None:
    """Every foreign key of the named SQLAlchemy core tables checked with one anti-join each
    (for rows loaded with the FK triggers off); AssertionError naming the first broken one."""
    for name in names:
        for fk in tables[name].foreign_keys:
            col, ref = fk.parent.name, fk.column
            broken = conn.execute(sql.SQL(
                "SELECT count(*) FROM {t} x WHERE x.{c} IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM {r} y WHERE y.{rc} = x.{c})").format(
                t=sql.Identifier(name), r=sql.Identifier(ref.table.name),
                rc=sql.Identifier(ref.name), c=sql.Identifier(col))).fetchone()[0]
            assert broken == 0, f"{name}.{col}: {broken} rows without {ref}"

def database_args(ap, default_db: str) -> None:
    """The options every benchmark with a database of its own takes."""
    ap.add_argument("--pg", default=os.environ.get("BENCH_PG_URL",
                                                   "postgresql://postgres@127.0.0.1:5432"),
                    help="server URL without database (env BENCH_PG_URL)")
    ap.add_argument("--db", default=default_db, help="database to (re)create")
    ap.add_argument("--keep", action="store_true", help="keep the database at the end")
    ap.add_argument("--reuse", action="store_true",
                    help="skip drop/create/load: reuse a database kept with --keep")
