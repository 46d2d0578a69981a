"""`flask analytics rebuild`: sum the daily rollups again from the ledger's rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import click
from flask.cli import AppGroup

from ..database import unit_of_work
from ..ledger import rollups
from ..models_base import utcnow

analytics_cli = AppGroup("analytics", help="The back office's figures.")


@analytics_cli.command("rebuild")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Rebuild the days from this one (UTC); default: every day.")
def rebuild_command(since: datetime | None) -> None:
    """Recompute the daily rollups from the split lines and payments, in one transaction;
    payments settling meanwhile wait for it (PostgreSQL)."""
    with unit_of_work():
        sales, payments, attempts = rollups.rebuild(since.date() if since else None)
    click.echo(f"rebuilt {sales} daily vendor row(s), {payments} daily payment row(s) and "
               f"{attempts} daily attempt row(s)"
               + (f" from {since:%Y-%m-%d}" if since else ""))


def rebuild_recent() -> None:
    """The nightly job (portal/cron_config.py): yesterday and today, UTC."""
    rollups.rebuild((utcnow() - timedelta(days=1)).date())
