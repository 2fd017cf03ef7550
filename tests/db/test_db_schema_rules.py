"""The schema keeps the rules docs/SCALING.md's distribution plan depends on.

Distributing by user_id (Citus) needs every primary key and unique index of a distributed table
to contain the distribution column; we hold the stricter rule that they *lead* with user_id (it
also keeps every per-user lookup a range scan of one index). The tables that are not distributed
are named in docs/SCALING.md, and this test reads that list, so the document and the schema
cannot drift apart.
"""
from __future__ import annotations

import re
from pathlib import Path

import psycopg

SCALING = Path(__file__).resolve().parents[2] / "docs" / "SCALING.md"
SECTION = "### Tables not distributed by user_id"


def named_exceptions() -> set[str]:
    text = SCALING.read_text()
    section = text[text.index(SECTION) + len(SECTION):]
    section = section[:section.index("\n#")] if "\n#" in section else section
    return set(re.findall(r"^- `(activity\.\w+)`", section, re.M))


def unique_indexes(conninfo: str) -> list[tuple[str, str, str | None, bool]]:
    """(table, index, first key column, is primary key) for every unique index in schema activity."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute("""
            SELECT t.relnamespace::regnamespace || '.' || t.relname, i.relname,
                   (SELECT a.attname FROM pg_attribute a
                     WHERE a.attrelid = t.oid AND a.attnum = x.indkey[0]), x.indisprimary
              FROM pg_index x
              JOIN pg_class i ON i.oid = x.indexrelid
              JOIN pg_class t ON t.oid = x.indrelid
             WHERE t.relnamespace = 'activity'::regnamespace AND t.relkind IN ('r', 'p')
               AND x.indisunique
             ORDER BY 1, 2""").fetchall()


def tables(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return {r[0] for r in conn.execute(
            "SELECT relnamespace::regnamespace || '.' || relname FROM pg_class"
            " WHERE relnamespace = 'activity'::regnamespace AND relkind IN ('r', 'p')").fetchall()}


def test_every_unique_index_of_a_distributed_table_leads_with_user_id(database):
    exceptions = named_exceptions()
    assert exceptions, f"{SCALING.name} names no tables under {SECTION!r}"
    indexes = unique_indexes(database.admin)
    distributed = tables(database.admin) - exceptions
    assert distributed, "no distributed table found"
    offenders = [(table, index, first) for table, index, first, _ in indexes
                 if table in distributed and first != "user_id"]
    assert offenders == [], (
        f"unique indexes that do not lead with user_id: {offenders}. Distribution by user_id needs "
        f"them to; or name the table in {SCALING.name} ({SECTION}) with the reason")
    with_pk = {table for table, _, _, primary in indexes if primary}
    assert distributed <= with_pk, f"tables without a primary key: {distributed - with_pk}"


def test_the_named_exceptions_exist(database):
    """A table the document names but the schema lacks is a stale document."""
    missing = named_exceptions() - tables(database.admin)
    assert missing == set(), f"{SCALING.name} names tables the schema does not have: {missing}"
