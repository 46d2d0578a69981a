"""`flask users create|token`."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..config import ROLES
from ..database import unit_of_work
from .services import UserError, create_user, find_user, issue_token

users_cli = AppGroup("users", help="Manage portal users.")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password", required=True, help="At least 8 characters.")
@click.option("--name", default="")
def create_command(email: str, role: str, password: str, name: str) -> None:
    """Create a user with a role."""
    try:
        with unit_of_work():
            user = create_user(email, role, password, name)
    except UserError as exc:
        raise click.ClickException(f"{exc.field}: {exc.message}") from None
    click.echo(f"created {user.role} {user.email}")


@users_cli.command("token")
@click.argument("email")
def token_command(email: str) -> None:
    """Print a Bearer JWT for the API (expires within an hour)."""
    user = find_user(email)
    if user is None:
        raise click.ClickException(f"no user with e-mail {email}")
    token, _ = issue_token(user)
    click.echo(token)
