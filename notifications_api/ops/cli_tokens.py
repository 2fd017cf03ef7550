"""Token commands: `issue-token` (development and testing only)."""
from __future__ import annotations

import uuid

import click

from .cli_env import fail, load


@click.command("issue-token")
@click.option("--user-id", type=click.UUID, required=True)
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24, show_default=True)
def issue_token(user_id: uuid.UUID, hours: float) -> None:
    """Print a user JWT signed with JWT_SECRET (development and testing only)."""
    from ..web.auth import issue_token as sign

    config = load()
    if config["ENVIRONMENT"] == "production":
        fail("issue-token is refused with ENVIRONMENT=production; user tokens come from the Auth API", 2)
    click.echo(sign(config, str(user_id), hours=hours))
