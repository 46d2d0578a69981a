"""`flask reconcile` and `flask events backfill`."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from flask.cli import AppGroup

from ..database import unit_of_work
from ..models_base import utcnow
from .services import STRIPE_EVENT_WINDOW, backfill, reconcile

events_cli = AppGroup("events", help="Stripe events.")


@click.command("reconcile")
@click.option("--minutes", default=10, show_default=True,
              help="Settle payments not final after this many minutes.")
@click.option("--all", "every", is_flag=True,
              help="Check now every payment not final that changed in the last 30 days "
                   "(and not in the last --minutes), not only those whose turn it is, "
                   "without the 500-payment, 4-minute limits of a scheduled run.")
def reconcile_command(minutes: int, every: bool) -> None:
    """Settle payments, refunds and payouts that webhooks left unsettled."""
    with unit_of_work():
        r = (reconcile(minutes, limit=None, budget_seconds=float("inf"), every=True) if every
             else reconcile(minutes))
    unread = f", {r.payments_unread} not read from Stripe" if r.payments_unread else ""
    failed = f", {r.payments_failed} failed (see the log)" if r.payments_failed else ""
    click.echo(f"payments checked {r.payments_checked}, changed {r.payments_changed}{unread}"
               f"{failed}; "
               f"refunds queued {r.refunds_requeued}; payouts queued {r.payouts_requeued}; "
               f"outbox messages queued {r.outbox_queued}; refunds of {r.refunds_compared} "
               f"payments compared with Stripe's, {r.refunds_imported} imported"
               + (f", {r.refunds_unread} not read" if r.refunds_unread else "")
               + f"; lost intents: {r.intents_linked} found and linked, "
                 f"{r.intents_canceled} canceled at Stripe, {r.intents_missing} not at Stripe")


@events_cli.command("backfill")
@click.option("--since", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="First day (UTC) to fetch; Stripe keeps 30 days of events.")
def backfill_command(since: datetime) -> None:
    """Fetch Stripe's events since a day and process those we missed."""
    if utcnow() - since.replace(tzinfo=UTC) > STRIPE_EVENT_WINDOW:
        click.echo("Stripe keeps 30 days of events: fetching the last 30 days.")
    with unit_of_work():
        listed, new = backfill(since.replace(tzinfo=UTC))
    click.echo(f"{listed} events listed, {new} new stored and queued for processing")
