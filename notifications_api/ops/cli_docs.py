"""The contract as a file: `openapi` writes the OpenAPI document the service serves (docs/openapi.json)."""
from __future__ import annotations

import json
import secrets
import sys
from datetime import datetime, timezone
from typing import Any

import click

SNAPSHOT = "docs/openapi.json"
# Examples that must lie ahead (a snooze's `until`, openapi.Ahead) are computed from the time the
# document is built; the snapshot computes them from this fixed instant instead, so regenerating it
# gives the same file whenever it runs. /openapi.json, built from the current time, is what a client
# or a fuzzer should read: there those examples are always ahead.
SNAPSHOT_INSTANT = datetime(2030, 1, 1, tzinfo=timezone.utc)


def reference_document() -> dict[str, Any]:
    """The document of an app on every default setting (neither the environment nor .env changes it):
    what /openapi.json serves wherever API_V1_PREFIX and PROJECT_NAME are left at their defaults."""
    from .. import create_app
    from ..config import SPEC
    from ..web import openapi

    defaults = {name: parse(default) for name, (parse, default) in SPEC.items()}
    app = create_app({**defaults, "ENABLE_DOCS": True, "LOG_LEVEL": "WARNING",
                      "JWT_SECRET": secrets.token_urlsafe(48), "SERVICE_TOKEN": secrets.token_urlsafe(48)})
    try:
        return openapi.build_spec(app, now=SNAPSHOT_INSTANT)
    finally:
        app.extensions["notifications_db"].close()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@click.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              show_default=True,
              help=f"Where to write it (`make openapi` writes {SNAPSHOT}).")
def openapi(output: str) -> None:
    """Write the OpenAPI document (every setting at its default), as /openapi.json serves it."""
    text = render(reference_document())
    if output == "-":
        sys.stdout.write(text)
    else:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
        click.echo(f"wrote {output}", err=True)
