"""The `notifications-api` command: the entry point, with each command group in a module of its own.

Adding a command: write a `@click.command()` function in the group's module (cli_dev, cli_database,
cli_workers, cli_tokens, cli_docs) and list it in COMMANDS below.
"""
from __future__ import annotations

import click

from . import cli_database, cli_dev, cli_docs, cli_tokens, cli_workers

COMMANDS = (
    cli_dev.check_config, cli_dev.dev, cli_dev.preflight,
    cli_database.migrate, cli_database.create_user, cli_database.purge,
    cli_workers.deliver_emails, cli_workers.deliver_push, cli_workers.stream_clock,
    cli_tokens.issue_token, cli_tokens.vapid_keys, cli_docs.openapi,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Notifications API: operations and development commands."""


for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="notifications-api")


if __name__ == "__main__":
    main()
