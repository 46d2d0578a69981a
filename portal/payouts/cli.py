"""`flask payouts run`: group unpaid split lines into payouts (also scheduled by rq cron)."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from flask.cli import AppGroup

from ..database import unit_of_work
from ..ledger.models import PERIODS
from ..money import format_minor

payouts_cli = AppGroup("payouts", help="Vendor payouts.")


@payouts_cli.command("run")
@click.option("--period", type=click.Choice(PERIODS), default=None,
              help="The period to pay (default: PAYOUT_SCHEDULE).")
@click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Pay lines created before this day (UTC); default: the end of the last "
                   "complete period.")
@click.option("--execute", is_flag=True, help="Approve the run and send the transfers now.")
def run_command(period: str | None, until: datetime | None, execute: bool) -> None:
    """Group every unpaid split line per vendor and currency into a payout."""
    from .services import approve_run, run_payouts, schedule_period, waiting_note

    with unit_of_work():  # the run (and its approval) commits at once, or not at all
        run = run_payouts(period=period or schedule_period(),
                          until=until.replace(tzinfo=UTC) if until else None)
        queued = approve_run(None, run.id) if run is not None and execute else None
    waiting = waiting_note()
    if waiting:
        click.echo(waiting)
    if run is None:
        click.echo("Nothing to pay: no payable lines with a positive total.")
        return
    for p in run.payouts:
        click.echo(f"  {p.vendor.email:<40} {format_minor(p.amount, p.currency):>14} "
                   f"{p.payment_count:>5} payments  {p.id}")
    click.echo(f"Run {run.id}: {len(run.payouts)} payouts of lines before "
               f"{run.until:%Y-%m-%d %H:%M} UTC.")
    if queued is not None:
        click.echo(f"Queued {queued} transfers.")


def scheduled_run() -> None:
    """The rq cron entry: the run of the configured period (executed when
    PAYOUT_AUTO_EXECUTE is set, else waiting for an admin's approval). A job: jobs.run
    commits it."""
    from .services import run_payouts, schedule_period

    run_payouts(period=schedule_period())
