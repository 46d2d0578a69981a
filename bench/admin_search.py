"""Benchmark: the admin payment search and its CSV export, 1,000,000 payments on PostgreSQL.

Acceptance items (issue 18, "Scale and speed"): "Seed 1,000,000 payments (100,000 customers,
1,000 vendors, 2 years, 8 currencies, realistic status mix, refunds on 5 %) into PostgreSQL
with COPY, through the project's own migrations, and report server time p50/p95 and the query
plans: search: each of e-mail, order number, PaymentIntent id, last4 + 30-day range, status +
currency + 30-day range, vendor, amount range, first page and 50 pages deep by cursor: p95 <
100 ms, no sequential scan of payments; CSV export of all 1,000,000 rows: >= 50,000 rows/s with
RSS growth < 100 MB; the customer history page (a customer with 10,000 payments) stays p95 <
50 ms at 1,000,000."

What it does (see bench/README.md, section "admin_search.py"):

1. drops and creates its own database (default ``portal_bench_search``) and builds the schema
   with the project's Alembic migrations;
2. generates the rows with ``history.build_dataset`` (fixed seed; the vendors' sales follow a
   Zipf law, 5 % of the succeeded payments are refunded, one customer has 10,000 payments) plus
   one admin, and loads them with ``history.load`` (COPY, foreign keys checked, VACUUM
   (ANALYZE));
3. signs the admin in through the real login form; for each search, finds its page 51 by
   following the "Older" link 50 times from the first page, then times the first page and
   page 51 (``GET /admin/payments?...``) through Flask's test client: warm-up, then N requests
   per case, the cases interleaved round-robin (``history.run_cases``); the app's objects are
   frozen out of the garbage collector first, as gunicorn.conf.py does in each worker;
4. checks that no search statement ran with a generic plan (pg_prepared_statements of the
   app's connection), captures the SQL of one request of each case and prints ``EXPLAIN
   (ANALYZE, BUFFERS)`` of the search query (one line per other statement); a Seq Scan of
   payments fails its case, and so does one of orders, order_items or users that reads more
   than 10,000 rows;
5. in a fresh process, streams ``GET /admin/payments.csv`` (no filter: every payment) chunk
   by chunk and reports rows/s and the growth of the process's RSS high-water mark;
6. times the customer history page (``GET /payments``, ``history.history_cases``) of the
   customer with 10,000 payments at this size, and checks its plans (``history.check_plan``);
7. exits 1 when a search case has p95 >= 100 ms, a history case p95 >= 50 ms, the export is
   slower than 50,000 rows/s or grows the RSS by 100 MB or more, or a plan check fails; drops
   the database unless ``--keep``.

Run: ``.venv/bin/python bench/admin_search.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import re
import resource
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from benchdb import database_args, drop_database, plain_url, recreate_database  # noqa: E402
from history import (  # noqa: E402
    NOW,
    TARGET_EMAIL,
    TARGET_PASSWORD,
    Case,
    Dataset,
    SqlRecorder,
    _walk,
    build_dataset,
    check_plan,
    explain,
    history_cases,
    load,
    plan_summary,
    run_cases,
)
from sqlalchemy import text as sa_text  # noqa: E402

ADMIN_EMAIL = "bench-admin@bench.shopsphere.test"
DEEP = 50  # pages followed by the "Older" link: the deep case is page DEEP + 1
# No search may read payments by a Seq Scan (the rule); nor these other tables, which
# grow with it, beyond a few rows (a Seq Scan under a LIMIT that stops at the 21st match is
# cheaper than an index there, and fine).
NO_SEQ_SCAN = "payments"
BIG_TABLES = {"orders", "order_items", "users"}
SEQ_ROWS = 10_000
_SEARCH = "ORDER BY payments.created_at DESC, payments.id DESC"
_OLDER = re.compile(r'<a href="(/admin/payments\?before=[^"]+)"[^>]*>Older</a>')
_SHOWN = re.compile(r"<span>(\d+) payments?, newest first</span>")


# --------------------------------------------------------------------------------------------
# Data


def build(tables, args) -> Dataset:
    """history.py's rows at this size, plus the admin who searches."""
    data = build_dataset(tables, customers=args.customers, vendors=args.vendors,
                         payments=args.payments, target_payments=args.target_payments,
                         seed=args.seed, refund_share=args.refund_share,
                         vendor_skew=args.vendor_skew)
    ucols = [c.name for c in tables["users"].columns]
    admin = dict(zip(ucols, data.users[0], strict=True))
    admin.update(id=uuid.uuid4().hex, email=ADMIN_EMAIL, name="Bench Admin", role="admin")
    data.users.append(tuple(admin[c] for c in ucols))
    return data


def pick_searches(conn: psycopg.Connection) -> list[tuple[str, dict]]:
    """The searches, with values taken from the loaded data: (name, query parameters)."""
    last_day = NOW.date()
    month = {"from": str(last_day - timedelta(days=29)), "to": str(last_day)}
    one = conn.execute(
        "SELECT p.order_id, p.stripe_payment_intent_id, p.stripe_charge_id FROM payments p "
        "WHERE p.status = 'succeeded' AND p.created_at < %s ORDER BY p.created_at DESC LIMIT 1",
        (NOW - timedelta(days=100),)).fetchone()
    order_id, intent, charge = one
    last4 = conn.execute(
        "SELECT card_last4 FROM payments WHERE card_last4 IS NOT NULL AND created_at >= %s "
        "ORDER BY created_at LIMIT 1", (NOW - timedelta(days=10),)).fetchone()[0]
    # Vendors by their number of orders, from the largest to the smallest: the search by
    # vendor picks its plan by the vendor's size (admin/search.py, _sold_by).
    vendors = conn.execute(
        "SELECT u.email, count(DISTINCT i.order_id) FROM users u "
        "JOIN order_items i ON i.vendor_id = u.id "
        "GROUP BY u.email ORDER BY count(DISTINCT i.order_id) DESC, u.email").fetchall()
    cheap = conn.execute(
        "SELECT amount FROM payments WHERE currency = 'EUR' AND created_at >= %s "
        "ORDER BY created_at DESC LIMIT 1", (NOW - timedelta(days=60),)).fetchone()[0]
    exact = f"{cheap // 100}.{cheap % 100:02d}"
    return [
        ("no filter", {}),
        ("e-mail", {"q": TARGET_EMAIL}),
        ("e-mail prefix", {"q": "customer1"}),
        ("order number", {"q": f"#{order_id.hex[:8].upper()}"}),
        ("PaymentIntent id", {"q": intent}),
        ("charge id", {"q": charge}),
        ("last4 + 30 days", {"q": last4, **month}),
        ("status + currency + 30 days", {"status": "succeeded", "currency": "USD", **month}),
        ("2 statuses + currency + 30 days", {"status": ["failed", "requires_payment_method"],
                                             "currency": "EUR", **month}),
        ("rare status + rare currency + 30 days", {"status": "requires_action",
                                                   "currency": "KWD", **month}),
        *[(f"vendor (rank {rank}, {orders:,} orders)", {"vendor": email})
          for rank, (email, orders) in sorted({
              r: vendors[r - 1] for r in (1, 10, 20, 30, 100, 250, len(vendors))
              if r <= len(vendors)}.items())],
        ("amount range", {"currency": "USD", "min": "50", "max": "60"}),
        ("amount exact", {"currency": "EUR", "min": exact, "max": exact}),
        ("refunded + currency", {"refunded": "on", "currency": "GBP"}),
    ]


# --------------------------------------------------------------------------------------------
# Search cases


@dataclass
class Search:
    name: str
    first: Case
    deep: Case | None  # None: fewer than DEEP + 1 pages
    pages: int  # pages reached by following "Older" (at most DEEP + 1)


def walk(client, name: str, params: dict) -> Search:
    """Follow "Older" from the first page up to page DEEP + 1; the cases of both ends."""
    path = "/admin/payments?" + urlencode(params, doseq=True)
    url, pages, cases = path, 0, []
    while url and pages <= DEEP:
        resp = client.get(url)
        assert resp.status_code == 200, (url, resp.status_code)
        body = resp.get_data(as_text=True)
        shown = _SHOWN.search(body)
        assert shown or (pages == 0 and "No payments match" in body), (name, url, body[-2000:])
        pages += 1
        if pages in (1, DEEP + 1):
            cases.append(Case(f"{name} p{pages}", url,
                              expect=shown.group(0) if shown else "No payments match"))
        older = _OLDER.search(body)
        url = older.group(1).replace("&amp;", "&") if older else None
    return Search(name, cases[0], cases[1] if len(cases) > 1 else None, pages)


def request_sql(client, rec: SqlRecorder, path: str) -> list[tuple[str, object]]:
    rec.statements.clear()
    rec.keep = True
    client.get(path)
    rec.keep = False
    return [(s, p) for s, p in rec.statements if s.lstrip().upper().startswith("SELECT")]


def seq_scans(plan: list) -> list[str]:
    """The plan's Seq Scans of payments, and of the other big tables when they read more
    than SEQ_ROWS rows."""
    found = []
    for n in _walk(plan[0]["Plan"]):
        table = n.get("Relation Name")
        if n["Node Type"] != "Seq Scan" or table not in BIG_TABLES | {NO_SEQ_SCAN}:
            continue
        read = (n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)) * n.get(
            "Actual Loops", 1)
        if table == NO_SEQ_SCAN or read > SEQ_ROWS:
            found.append(f"Seq Scan on {table} ({read:,} rows read)")
    return found


def explain_case(args, client, rec: SqlRecorder, case: Case, verbose: bool) -> tuple[str, list]:
    """EXPLAIN every SELECT of one request of the case: (summary of the search query,
    problems). The search query's whole plan is printed, the others' in one line."""
    print(f"\n-- {case.name}: {case.path}")
    main, problems = "", []
    for statement, params in request_sql(client, rec, case.path):
        text, plan = explain(args.pg, args.db, statement, params, generic=False,
                             setup=("SET jit = off",))  # as database.plan_each_query
        found = seq_scans(plan)
        ms = plan[0]["Execution Time"]
        is_search = _SEARCH in statement
        problems += [f"{'search' if is_search else 'other'} query: {p}" for p in found]
        verdict = "OK" if not found else "FAIL: " + "; ".join(found)
        if is_search:
            main = f"{plan_summary(plan)} ({ms:.2f} ms)"
            print(f"   search query: {verdict}, {ms:.3f} ms")
            if verbose:
                print("   SQL: " + " ".join(statement.split()))
                print(f"   params: {params}")
            print("\n".join("   " + line for line in text.splitlines()))
        else:
            what = " ".join(statement.split())[:90]
            print(f"   other: {verdict}, {ms:.3f} ms: {plan_summary(plan)}  [{what}...]")
    return main, problems


# --------------------------------------------------------------------------------------------
# CSV export, in a fresh process (its RSS is then the export's, not the data generator's)


def _vm_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1))


def _cpu_s(pid: int) -> float | None:
    """CPU seconds of a process of this machine (the PostgreSQL backend), None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def measured_export(db_url: str, out) -> None:
    """Sign in as the admin, stream GET /admin/payments.csv (every payment) chunk by chunk;
    send back rows, bytes, seconds, CPU and the RSS figures."""
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from portal import create_app
    from portal.extensions import db

    app = create_app(DATABASE_URL=db_url, PORTAL_ENV="test", extra={"WTF_CSRF_ENABLED": False})
    client = app.test_client()
    resp = client.post("/login", data={"email": ADMIN_EMAIL, "password": TARGET_PASSWORD})
    assert resp.status_code == 302, f"login failed: {resp.status_code}"
    client.get("/admin/payments.csv?q=nobody%40bench")  # warm: imports, the first connection
    with app.app_context():  # the pool's one connection, which the requests use
        backend = db.session.execute(sa_text("SELECT pg_backend_pid()")).scalar()
        db.session.rollback()
    gc.collect()
    gc.freeze()  # as gunicorn.conf.py's post_worker_init does in each worker
    rss0 = _vm_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS: VmHWM after the export is the export's own peak
    usage0, server0 = resource.getrusage(resource.RUSAGE_SELF), _cpu_s(backend)
    lines = size = chunks = 0
    samples = []
    first = b""
    t0 = time.perf_counter()
    resp = client.get("/admin/payments.csv", buffered=False)
    assert resp.status_code == 200, resp.status_code
    for chunk in resp.response:
        chunk = chunk.encode() if isinstance(chunk, str) else chunk
        lines += chunk.count(b"\n")
        size += len(chunk)
        chunks += 1
        if not first:
            first = chunk[:400]
        samples.append(_vm_kb("VmRSS"))
    resp.close()
    wall = time.perf_counter() - t0
    usage1, server1 = resource.getrusage(resource.RUSAGE_SELF), _cpu_s(backend)
    hwm = _vm_kb("VmHWM")
    with app.app_context():
        db.engine.dispose()
    out.send({"rows": lines - 1, "bytes": size, "chunks": chunks, "wall_s": wall,
              "cpu_s": (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
              "server_cpu_s": None if None in (server0, server1) else server1 - server0,
              "rss_before_kb": rss0, "hwm_delta_kb": hwm - rss0,
              "rss_samples_kb": samples, "head": first.decode("utf-8", "replace")})
    out.close()


def run_export(db_url: str) -> dict:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=measured_export, args=(db_url, child))
    proc.start()
    child.close()
    result = parent.recv()
    proc.join()
    return result


# --------------------------------------------------------------------------------------------


def data_args(ap) -> None:
    """The options of the data ``seed_database`` makes (analytics.py seeds the same)."""
    ap.add_argument("--payments", type=int, default=1_000_000)
    ap.add_argument("--target-payments", type=int, default=10_000,
                    help="payments of the customer whose history is timed")
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--vendors", type=int, default=1_000)
    ap.add_argument("--refund-share", type=float, default=0.05,
                    help="share of the succeeded payments refunded")
    ap.add_argument("--vendor-skew", type=float, default=1.0,
                    help="Zipf exponent of the vendors' sales (0: all alike)")
    ap.add_argument("--seed", type=int, default=20261218)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    database_args(ap, "portal_bench_search")
    ap.add_argument("--requests", type=int, default=100, help="timed requests per case")
    ap.add_argument("--warmup", type=int, default=10, help="untimed requests per case")
    ap.add_argument("--case-seconds", type=float, default=15.0,
                    help="stop timing a case after this long (at least 20 requests)")
    data_args(ap)
    ap.add_argument("--target-ms", type=float, default=100.0, help="search p95 target")
    ap.add_argument("--history-target-ms", type=float, default=50.0, help="history p95 target")
    ap.add_argument("--target-rows-s", type=float, default=50_000.0, help="CSV rows/s target")
    ap.add_argument("--target-rss-mb", type=float, default=100.0, help="CSV RSS growth limit")
    ap.add_argument("--no-csv", action="store_true", help="skip the CSV export")
    ap.add_argument("--sql", action="append", default=[], metavar="STATEMENT",
                    help="run this SQL in the bench database before timing (experiments, "
                         "e.g. --sql 'CREATE INDEX ...'); repeatable")
    return ap.parse_args(argv)


def seed_database(args, app, tables) -> None:
    from flask_migrate import upgrade

    from portal.extensions import db

    print(f"== database {args.db}: drop, create, alembic upgrade")
    recreate_database(args.pg, args.db)
    with app.app_context():
        upgrade()
        db.engine.dispose()
    t0 = time.perf_counter()
    gc.disable()  # millions of new tuples: the cyclic GC would only slow this down
    data = build(tables, args)
    t1 = time.perf_counter()
    took = load(args.pg, args.db, tables, data)
    print(f"   generated {len(data.users):,} users, {len(data.orders):,} orders, "
          f"{len(data.items):,} order items, {len(data.payments):,} payments in {t1 - t0:.1f} s;"
          " " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
    del data
    gc.enable()
    gc.collect()


def describe(args) -> tuple[list, dict]:
    """Print the database's figures; the searches and the target's payments by status."""
    with psycopg.connect(plain_url(args.pg, args.db), autocommit=True) as conn:
        for stmt in args.sql:
            print(f"   experiment: {stmt}")
            conn.execute(stmt)
        if args.sql:
            conn.execute("ANALYZE")
        total, refunded, vendors, customers = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE amount_refunded > 0), "
            "(SELECT count(*) FROM users WHERE role = 'vendor'), "
            "(SELECT count(*) FROM users WHERE role = 'customer') FROM payments").fetchone()
        counts = dict(conn.execute(
            "SELECT status, count(*) FROM payments p JOIN users u ON u.id = p.user_id "
            "WHERE u.email = %s GROUP BY status", (TARGET_EMAIL,)).fetchall())
        sizes = conn.execute(
            "SELECT c.relname, pg_size_pretty(pg_total_relation_size(c.oid)) FROM pg_class c "
            "WHERE c.relname IN ('payments', 'orders', 'order_items', 'users') "
            "ORDER BY 1").fetchall()
        server = conn.execute("SHOW server_version").fetchone()[0]
        shared = conn.execute("SHOW shared_buffers").fetchone()[0]
        searches = pick_searches(conn)
    print(f"   {total:,} payments ({refunded:,} refunded), {customers:,} customers, "
          f"{vendors:,} vendors; sizes: {', '.join(f'{n} {s}' for n, s in sizes)}; "
          f"PostgreSQL {server}, shared_buffers {shared}; {os.cpu_count()} CPUs")
    return searches, counts


def print_times(results, target: float, failures: list, plans: dict | None = None) -> None:
    print("| case | n | p50 ms | p95 ms | max ms | SQL p95 ms | queries |"
          + (" search query plan |" if plans is not None else ""))
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
          + (" --- |" if plans is not None else ""))
    for r in results:
        p95 = r.pct(r.total_ms, 95)
        flag = "" if p95 < target else " **over target**"
        plan = f" {plans.get(r.case.name, '')} |" if plans is not None else ""
        print(f"| {r.case.name} | {len(r.total_ms)} | {r.pct(r.total_ms, 50):.1f} | "
              f"{p95:.1f}{flag} | {max(r.total_ms):.1f} | {r.pct(r.sql_ms, 95):.1f} | "
              f"{r.queries} |{plan}")
        if p95 >= target:
            failures.append(f"{r.case.name}: p95 {p95:.1f} ms >= {target:g} ms")


def time_searches(args, app, rec, searches: list, failures: list) -> None:
    client = app.test_client()
    resp = client.post("/login", data={"email": ADMIN_EMAIL, "password": TARGET_PASSWORD})
    assert resp.status_code == 302, f"login failed: {resp.status_code}"
    print(f"\n== the searches: page 1, and page {DEEP + 1} reached by following 'Older'")
    found = []
    for name, params in searches:
        t0 = time.perf_counter()
        s = walk(client, name, params)
        print(f"   {name}: {s.pages} page(s) followed in {time.perf_counter() - t0:.1f} s"
              + ("" if s.deep else f" (fewer than {DEEP + 1} pages: page 1 only)"))
        found.append(s)
    cases = [c for s in found for c in (s.first, s.deep) if c]
    print(f"\n== GET /admin/payments as an admin: {args.warmup} warm-up + {args.requests} timed"
          " requests per case, cases interleaved (Flask test client, in-process)")
    load0 = os.getloadavg()[0]
    results = run_cases(client, rec, cases, args.warmup, args.requests, args.case_seconds)
    load1 = os.getloadavg()[0]
    print(f"   load average (1 min) before/after timing: {load0:.2f} / {load1:.2f} on "
          f"{os.cpu_count()} CPUs")

    failures += generic_plans(app)
    print("\n== EXPLAIN (ANALYZE, BUFFERS) of each case's SQL, planned for its values (as the "
          "search asks: database.plan_each_query)")
    plans = {}
    for i, case in enumerate(cases):
        plans[case.name], problems = explain_case(args, client, rec, case, verbose=i == 0)
        failures += [f"{case.name}: {p}" for p in problems]
    print("\n== search: server time, ms")
    print_times(results, args.target_ms, failures, plans)


def generic_plans(app) -> list[str]:
    """psycopg prepares a statement on the server after 5 executions on a connection, and
    PostgreSQL may then use a generic plan: did any statement of the timed searches get one?
    (The search asks for custom plans from its first query on; this checks that it works.
    Flask-Login's user by primary key comes before it and may: its plan is the same for
    every value, as is that of a statement without parameters.)"""
    from portal.extensions import db

    with app.app_context():
        prepared = db.session.execute(sa_text(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")).all()
        db.session.rollback()
    statements = [(" ".join(st.split()), g, c) for st, g, c in prepared]
    searched = [(st, g, c) for st, g, c in statements if "$1" in st  # else: one plan anyway
                and not st.endswith("FROM users WHERE users.id = $1::UUID")]
    generic = [(st, g) for st, g, _ in searched if g]
    print(f"   prepared statements on the app's connection: {len(prepared)}; those of the "
          f"searches ran {sum(c for _, _, c in searched):,} times with a custom plan and "
          f"{sum(g for _, g in generic):,} times with a generic one")
    return [f"generic plan {g} times: {st[:120]}" for st, g in generic]


def time_history(args, app, rec, counts: dict, failures: list) -> None:
    client = app.test_client()
    resp = client.post("/login", data={"email": TARGET_EMAIL, "password": TARGET_PASSWORD})
    assert resp.status_code == 302, f"login failed: {resp.status_code}"
    cases = history_cases(counts)
    print(f"\n== GET /payments as the customer with {sum(counts.values()):,} payments "
          f"(history.py's cases), {args.warmup} warm-up + {args.requests} timed")
    results = run_cases(client, rec, cases, args.warmup, args.requests, args.case_seconds)
    for case in cases[:4]:
        for statement, params in request_sql(client, rec, case.path):
            if "FROM payments" not in statement:
                continue
            text, plan = explain(args.pg, args.db, statement, params, generic=False)
            problems = check_plan(plan, status=case.status)
            kind = "count" if "count(" in statement else "page"
            print(f"   plan of {case.name}, {kind} query: {'OK' if not problems else 'FAIL'} "
                  f"({plan_summary(plan)}; {plan[0]['Execution Time']:.2f} ms)")
            failures += [f"history {case.name}: {p}" for p in problems]
    print("\n== history: server time, ms")
    print_times(results, args.history_target_ms, failures)


def check_export(args, total: int, failures: list) -> None:
    print("\n== GET /admin/payments.csv (no filter: every payment), streamed, in a fresh "
          "process")
    load0 = os.getloadavg()[0]
    r = run_export(plain_url(args.pg, args.db))
    rate = r["rows"] / r["wall_s"]
    growth = r["hwm_delta_kb"] / 1024
    samples = [s / 1024 for s in r["rss_samples_kb"]] or [0]
    print(f"   first bytes: {r['head'][:160]!r}")
    print(f"   load average (1 min) before/after: {load0:.2f} / {os.getloadavg()[0]:.2f}")
    server = "?" if r["server_cpu_s"] is None else f"{r['server_cpu_s']:.1f}"
    print("| rows | MB | chunks | seconds | rows/s | CPU s: Python / PostgreSQL | RSS before | "
          "RSS high-water growth | RSS during (min / median / max) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print(f"| {r['rows']:,} | {r['bytes'] / 2**20:.0f} | {r['chunks']:,} | {r['wall_s']:.1f} | "
          f"**{rate:,.0f}** | {r['cpu_s']:.1f} / {server} | {r['rss_before_kb'] / 1024:.0f} MiB | "
          f"**{growth:.1f} MiB** | {min(samples):.0f} / {statistics.median(samples):.0f} / "
          f"{max(samples):.0f} MiB |")
    if r["rows"] != total:
        failures.append(f"CSV has {r['rows']:,} rows, the table {total:,}")
    if rate < args.target_rows_s:
        failures.append(f"CSV export {rate:,.0f} rows/s < {args.target_rows_s:,.0f}")
    if growth >= args.target_rss_mb:
        failures.append(f"CSV export grew the RSS by {growth:.1f} MiB >= {args.target_rss_mb:g}")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    from portal import create_app
    from portal.extensions import db

    started = time.perf_counter()
    app = create_app(DATABASE_URL=plain_url(args.pg, args.db), PORTAL_ENV="test",
                     # The login form is posted without a CSRF token; nothing else differs.
                     extra={"WTF_CSRF_ENABLED": False})
    failures: list[str] = []
    try:
        if not args.reuse:
            seed_database(args, app, db.metadata.tables)
        searches, counts = describe(args)
        with app.app_context():
            rec = SqlRecorder(db.engine)
        gc.collect()
        gc.freeze()  # as gunicorn.conf.py's post_worker_init does in each worker
        time_searches(args, app, rec, searches, failures)
        time_history(args, app, rec, counts, failures)
        if not args.no_csv:
            with psycopg.connect(plain_url(args.pg, args.db)) as conn:
                total = conn.execute("SELECT count(*) FROM payments").fetchone()[0]
            check_export(args, total, failures)
    finally:
        with app.app_context():
            db.engine.dispose()
        if args.keep:
            print(f"\n(database {args.db} kept)")
        else:
            drop_database(args.pg, args.db)

    print(f"\n== total run time {time.perf_counter() - started:.0f} s")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"PASSED: every search p95 < {args.target_ms:g} ms with no Seq Scan on "
          f"{NO_SEQ_SCAN} (nor of more than {SEQ_ROWS:,} rows on "
          f"{', '.join(sorted(BIG_TABLES))}); history p95 < {args.history_target_ms:g} ms"
          + ("" if args.no_csv else f"; CSV >= {args.target_rows_s:,.0f} rows/s, RSS growth < "
             f"{args.target_rss_mb:g} MiB"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
