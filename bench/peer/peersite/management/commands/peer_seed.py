"""`manage.py peer_seed`: (re)create the peer's database, migrate it, load seed.sql set-based.

The database of PEER_DATABASE_URL is dropped if it exists and created through
--server-url (a superuser URL to any database of that server); then Django's migrations (the
package's indexes are the ones its migrations create, nothing else) and bench/peer/seed.sql.
"""
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from django.conf import settings
from django.core.management import BaseCommand, call_command
from psycopg import sql

SEED_SQL = Path(__file__).resolve().parents[3] / "seed.sql"
SESSION = "SET synchronous_commit = off; SET maintenance_work_mem = '256MB'; "


class Command(BaseCommand):
    help = "Create, migrate and seed the peer's database (bench/peer/seed.sql)."

    def add_arguments(self, parser):
        parser.add_argument("--server-url", required=True, help="superuser URL to the PostgreSQL server")
        parser.add_argument("--users", type=int, default=10_000)
        parser.add_argument("--per-user", type=int, default=100)
        parser.add_argument("--heavy", type=int, default=100_000)

    def handle(self, *args, server_url, users, per_user, heavy, **options):
        started = time.perf_counter()
        name, conninfo = settings.DATABASES["default"]["NAME"], settings.DATABASE_URL
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        call_command("migrate", verbosity=0, interactive=False)

        def run(statement):
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(SESSION + statement)

        text = SEED_SQL.read_text()
        sections = dict(re.findall(r"^-- @(\w+)\n(.*?)(?=^-- @|\Z)", text, flags=re.S | re.M))
        params = {"users": users, "per_user": per_user, "heavy": heavy}
        run(sections["prepare"].format(**params))
        jobs = []
        for statement in re.split(r";\s*\n\s*\n", sections["load"]):
            if "{first}" in statement:
                half = users // 2
                jobs += [statement.format(**params, first=1, last=half),
                         statement.format(**params, first=half + 1, last=users)]
            elif statement.strip():
                jobs.append(statement.format(**params))
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(run, jobs))
        loaded = time.perf_counter() - started
        with psycopg.connect(conninfo, autocommit=True) as conn:
            ddl = conn.execute("SELECT kind, ddl FROM public.peer_ddl ORDER BY kind DESC, name").fetchall()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(run, [statement for kind, statement in ddl if kind == "index"]))
        run("; ".join(statement for kind, statement in ddl if kind == "fkey"))
        run(sections["finish"])
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE notifications_notification, auth_user")
            total, unread = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE unread) FROM notifications_notification").fetchone()
        self.stdout.write(json.dumps({
            "database": name, "notifications": total, "unread": unread, "users": users + 1,
            "indexes": sum(kind == "index" for kind, _ in ddl) + 1,
            "seconds": round(time.perf_counter() - started, 1), "load_seconds": round(loaded, 1)}))
