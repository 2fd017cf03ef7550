"""Worker commands: `deliver-emails` and `deliver-push` (channels/), `stream-clock` (live/)."""
from __future__ import annotations

import signal
import sys

import click

from .cli_env import environment, fail, load


@click.command("deliver-emails")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit (default: until SIGTERM).")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="E-mails leased per claim.")
@click.option("--lease-seconds", type=click.IntRange(1, 3600), default=60, show_default=True,
              help="How long a claimed batch is ours; a dead worker's rows go to another worker after it.")
@click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Seconds between polls when nothing is due.")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="Seconds to connect to the Email API (TCP and TLS).")
@click.option("--read-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait on each read of its answer.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve Prometheus metrics on this port (0: off).")
@click.option("--metrics-addr", default="0.0.0.0", show_default=True, help="Address for --metrics-port.")
def deliver_emails(once: bool, batch_size: int, lease_seconds: int, poll_interval: float,
                   connect_timeout: float, read_timeout: float, metrics_port: int, metrics_addr: str) -> None:
    """E-mail worker: send queued e-mail deliveries to EMAIL_API_URL (docs/EMAIL.md).

    Connects as WORKER_DATABASE_URL (a member of notifications_worker), else the configured database.
    """
    import psycopg

    from .. import logs
    from ..channels.email_worker import WorkerSettings, WorkerSetupError, serve

    env = environment()
    config = load(env, need_secrets=False)
    logs.configure(config)
    settings = WorkerSettings(
        email_api_url=config["EMAIL_API_URL"], email_api_key=config["EMAIL_API_KEY"],
        max_attempts=config["EMAIL_MAX_ATTEMPTS"], digest_delay_seconds=config["EMAIL_DIGEST_DELAY_SECONDS"],
        batch_size=batch_size, lease_seconds=lease_seconds,
        poll_interval=poll_interval, connect_timeout=connect_timeout, read_timeout=read_timeout,
        prepare_threshold=config["DB_PREPARE_THRESHOLD"])
    try:
        code = serve(env.get("WORKER_DATABASE_URL") or config["DATABASE_CONNINFO"], settings, once=once,
                     metrics_port=metrics_port, metrics_addr=metrics_addr)
    except WorkerSetupError as exc:
        fail(str(exc), 2)
    except psycopg.Error as exc:
        fail(f"database error: {str(exc).strip()}")
    sys.exit(code)


@click.command("stream-clock")
@click.option("--once", is_flag=True, help="Publish what the clock changed now, then exit.")
@click.option("--interval", type=click.FloatRange(1, 60), default=15.0, show_default=True,
              help="Seconds between ticks (API.md: clock changes reach the streams within 60 s).")
def stream_clock(once: bool, interval: float) -> None:
    """Push snooze ends and expiries to the live streams (GRIP_PUBLISH_URL). Safe on several replicas."""
    import threading

    from ..live import clock
    from .. import logs
    from ..db.pool import Database
    from ..live.publisher import Publisher

    config = load(environment(), need_secrets=False)
    logs.configure(config)
    if not config["GRIP_PUBLISH_URL"]:
        fail("GRIP_PUBLISH_URL is not set: there is nothing to publish to", 2)
    database = Database(config)
    publisher = Publisher(config["GRIP_PUBLISH_URL"], database)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if once:
            click.echo(f"published the counts of {clock.tick(database, publisher)} user(s)")
        else:
            clock.run(database, publisher, stop, interval)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()  # the last tick's counts are still on their way to Pushpin
        database.close()


@click.command("deliver-push")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit (default: until SIGTERM).")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=200, show_default=True,
              help="Deliveries leased per claim.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Requests in flight at once (also the keep-alive sockets per push service).")
@click.option("--lease-seconds", type=click.IntRange(1, 3600), default=60, show_default=True,
              help="How long a claimed batch is ours; a dead worker's rows go to another worker after it.")
@click.option("--poll-interval", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Seconds between polls when nothing is due.")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="Seconds to connect to a push service (TCP and TLS).")
@click.option("--read-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait on each read of its answer.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve Prometheus metrics on this port (0: off).")
@click.option("--metrics-addr", default="0.0.0.0", show_default=True, help="Address for --metrics-port.")
def deliver_push(once: bool, batch_size: int, concurrency: int, lease_seconds: int, poll_interval: float,
                 connect_timeout: float, read_timeout: float, metrics_port: int, metrics_addr: str) -> None:
    """Web Push worker: send queued pushes to the browsers' push services (docs/PUSH.md).

    Connects as WORKER_DATABASE_URL (a member of notifications_push_worker), else the configured database.
    """
    import psycopg

    from .. import logs
    from ..channels.email_worker import WorkerSetupError
    from ..channels.push_worker import PushSettings, serve
    from ..config import load_vapid_private_key

    env = environment()
    config = load(env, need_secrets=False)
    logs.configure(config)
    if not config["VAPID_PRIVATE_KEY"]:
        fail("VAPID_PRIVATE_KEY is not set: push is not configured (`notifications-api vapid-keys`)", 2)
    settings = PushSettings(
        vapid_private_key=load_vapid_private_key(config["VAPID_PRIVATE_KEY"]),
        vapid_subject=config["VAPID_SUBJECT"], allowed_hosts=config["PUSH_ALLOWED_HOSTS"],
        ttl_seconds=config["PUSH_TTL_SECONDS"], max_attempts=config["PUSH_MAX_ATTEMPTS"],
        batch_size=batch_size, concurrency=concurrency, lease_seconds=lease_seconds,
        poll_interval=poll_interval, connect_timeout=connect_timeout, read_timeout=read_timeout,
        prepare_threshold=config["DB_PREPARE_THRESHOLD"])
    try:
        code = serve(env.get("WORKER_DATABASE_URL") or config["DATABASE_CONNINFO"], settings, once=once,
                     metrics_port=metrics_port, metrics_addr=metrics_addr)
    except WorkerSetupError as exc:
        fail(str(exc), 2)
    except psycopg.Error as exc:
        fail(f"database error: {str(exc).strip()}")
    sys.exit(code)
