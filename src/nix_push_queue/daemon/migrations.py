"""The queue database's schema: migration n takes it from version n-1 to n, in the
transaction that opens the store; a new column means a new entry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import QueueError
from .derivations import MIGRATION_4, MIGRATION_5
from .ledger import MIGRATION_2
from .watch import MIGRATION_3

SCHEMA_VERSION = 5

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        target TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'inflight', 'done', 'dead', 'skipped')),
        attempts INTEGER NOT NULL,
        next_attempt_at REAL NOT NULL,
        last_error TEXT,
        last_error_at REAL,
        enqueued_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        drv TEXT,
        size INTEGER,
        UNIQUE (path, target)
    );
    CREATE INDEX jobs_claim ON jobs (target, state, next_attempt_at);
    CREATE INDEX jobs_age ON jobs (target, state, enqueued_at);
    -- The newest error per target outlives the row that had it (status shows it).
    CREATE TABLE last_errors (
        target TEXT PRIMARY KEY, message TEXT NOT NULL, at REAL NOT NULL
    );
    """,
    2: MIGRATION_2,
    3: MIGRATION_3,
    4: MIGRATION_4,
    5: MIGRATION_5,
}


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Inside a write transaction: bring the database to SCHEMA_VERSION. Raises QueueError
    for a database newer than this program."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    current = row[0] or 0
    if current > SCHEMA_VERSION:
        raise QueueError(
            f"queue {path}: schema version {current} is newer than this "
            f"nix-push-queue ({SCHEMA_VERSION}); upgrade it or use another state_dir")
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[version].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
