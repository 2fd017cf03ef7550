"""Token and key commands: `issue-token` (development and testing only), `vapid-keys`."""
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


@click.command("vapid-keys")
def vapid_keys() -> None:
    """Print a new VAPID key pair for Web Push (docs/PUSH.md).

    VAPID_PRIVATE_KEY goes into the secrets (never a ConfigMap); the public key is what
    GET {prefix}/push/vapid-public-key serves. Changing the key invalidates every subscription.
    """
    from ..channels.push_crypto import generate_vapid_keys

    private, public = generate_vapid_keys()
    click.echo(f"VAPID_PRIVATE_KEY={private}")
    click.echo(f"# public key (served by /push/vapid-public-key): {public}")
