"""The SQLite queue: one row per (store path, target), moved through its states by the daemon.

States: `pending` (waiting, due at `next_attempt_at`) -> `inflight` (claimed by a worker) ->
`done` | `skipped` (filtered at upload) | `dead` (dead letter) | back to `pending` (retry with
backoff). `attempts` counts failed attempts: `fail` increments it, `claim` does not.

Durability: WAL with synchronous=FULL, so a commit (and the hook's ack, sent after it) survives
power loss, not only a crash of the process. Writes run in `BEGIN IMMEDIATE` transactions with
a busy timeout, so several processes may share the file.

Thread safety: one connection per QueueStore, guarded by a lock; every method may be called
from any thread (the daemon calls it from asyncio via `asyncio.to_thread`). Calls are short:
claim and stats are index lookups, also with 100,000 rows.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import QueueError
from ..wire.protocol import TargetStats
from .ledger import MIGRATION_2, RootLedger, drop_lost, loss_counts, record_lost, unlose
from .watch import MIGRATION_3, PathWatch, claim_priority

__all__ = ["SCHEMA_VERSION", "Job", "JobState", "QueueStore", "TargetStats"]

JobState = Literal["pending", "inflight", "done", "dead", "skipped"]
STATES: tuple[JobState, ...] = ("pending", "inflight", "done", "dead", "skipped")
SCHEMA_VERSION = 3

# Migration n takes the database from version n-1 to n; a new column means a new entry.
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
}


@dataclass(frozen=True)
class Job:
    id: int
    path: str
    target: str
    attempts: int  # failed attempts so far
    drv: str | None
    enqueued_at: float
    size: int | None


class QueueStore(RootLedger, PathWatch):
    """The queue database. See the module docstring for durability and thread safety.
    GC roots and lost paths: ledger.py. Waiters' progress and priority: watch.py."""

    def __init__(self, db_path: Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(db_path)
        self._lock = threading.Lock()
        try:
            _private_file(self.path)
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout,
                                         isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        except (sqlite3.Error, OSError) as exc:
            raise QueueError(f"queue {self.path}: cannot open: {exc}") from exc
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> QueueStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; sqlite errors become QueueError naming the operation."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise QueueError(f"queue {self.path}: {what} failed: {exc}") from exc

    def _migrate(self) -> None:
        with self._write("schema migration") as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise QueueError(
                    f"queue {self.path}: schema version {current} is newer than this "
                    f"nix-push-queue ({SCHEMA_VERSION}); upgrade it or use another state_dir")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT version FROM schema_version").fetchone()[0])

    # -- producers ------------------------------------------------------------------------

    def enqueue(self, paths: Iterable[str], targets: Sequence[str], now: float, *,
                drv: str | None = None) -> int:
        """Queue every path for every target in one transaction; returns rows created or
        revived. An existing row is left alone unless it is dead: a new build of a dead path
        moves it back to pending with attempts = 0."""
        unique = list(paths)
        rows = [(p, t, now, drv) for p in unique for t in targets]
        with self._write("enqueue") as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO jobs (path, target, state, attempts, next_attempt_at,"
                " enqueued_at, updated_at, drv) VALUES (?1, ?2, 'pending', 0, ?3, ?3, ?3, ?4)"
                " ON CONFLICT (path, target) DO UPDATE SET state = 'pending', attempts = 0,"
                " next_attempt_at = excluded.next_attempt_at,"
                " enqueued_at = excluded.enqueued_at, updated_at = excluded.updated_at,"
                " drv = coalesce(excluded.drv, drv) WHERE state = 'dead'",
                rows,
            )
            created = conn.total_changes - before
            unlose(conn, unique, targets)
            return created

    # -- workers --------------------------------------------------------------------------

    def recover(self) -> int:
        """After a crash: every inflight row back to pending (its upload may not have ended)."""
        with self._write("recover") as conn:
            return conn.execute("UPDATE jobs SET state = 'pending' WHERE state = 'inflight'"
                                ).rowcount

    def claim(self, target: str, limit: int, now: float) -> list[Job]:
        """Move up to `limit` due pending rows of `target` to inflight, oldest due first,
        rows someone waits for (watch.py) before the rest."""
        with self._write("claim") as conn:
            rows = claim_priority(conn, target, limit, now)
            rows += conn.execute(
                "SELECT id, path, target, attempts, drv, enqueued_at, size FROM jobs"
                " WHERE target = ? AND state = 'pending' AND next_attempt_at <= ?"
                " AND priority = 0 ORDER BY next_attempt_at, id LIMIT ?",
                (target, now, limit - len(rows)),
            ).fetchall()
            conn.executemany("UPDATE jobs SET state = 'inflight', updated_at = ? WHERE id = ?",
                             [(now, r[0]) for r in rows])
        return [Job(*r) for r in rows]

    def next_due(self, target: str) -> float | None:
        """When the earliest pending row of `target` is due (None: nothing pending)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT min(next_attempt_at) FROM jobs WHERE target = ? AND state = 'pending'",
                (target,)).fetchone()
        return None if row[0] is None else float(row[0])

    def complete(self, ids: Sequence[int], now: float, *,
                 sizes: Mapping[int, int] | None = None) -> None:
        """Uploaded. `sizes` (id -> bytes), when known, feeds the metrics."""
        with self._write("complete") as conn:
            conn.executemany("UPDATE jobs SET state = 'done', updated_at = ? WHERE id = ?",
                             [(now, i) for i in ids])
            if sizes:
                conn.executemany("UPDATE jobs SET size = ? WHERE id = ?",
                                 [(size, i) for i, size in sizes.items()])

    def skip(self, ids: Sequence[int], reason: str, now: float) -> None:
        """Filtered out at upload time (e.g. already served by an upstream cache)."""
        with self._write("skip") as conn:
            conn.executemany(
                "UPDATE jobs SET state = 'skipped', last_error = ?, updated_at = ? WHERE id = ?",
                [(reason, now, i) for i in ids])

    def fail(self, ids: Sequence[int], error: str, now: float,
             retry_at: float | None) -> None:
        """One failed attempt: pending again from `retry_at`, or a dead letter when None."""
        state = "dead" if retry_at is None else "pending"
        with self._write("fail") as conn:
            conn.executemany(
                "UPDATE jobs SET state = ?1, next_attempt_at = coalesce(?2, next_attempt_at),"
                " attempts = attempts + 1, last_error = ?3, last_error_at = ?4,"
                " updated_at = ?4 WHERE id = ?5",
                [(state, retry_at, error, now, i) for i in ids])
            conn.executemany(
                "INSERT OR REPLACE INTO last_errors (target, message, at)"
                " SELECT target, ?, ? FROM jobs WHERE id = ?",
                [(error, now, i) for i in ids])

    def forget(self, ids: Sequence[int], reason: str, now: float | None = None) -> None:
        """The path is gone from the local store (garbage-collected): the row moves to the
        lost table (ledger.py), which `status` counts until a person drops it. `reason` is
        for the caller's log line."""
        del reason
        stamp = time.time() if now is None else now
        with self._write("forget") as conn:
            record_lost(conn, ids, stamp)
            conn.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])

    def release(self, ids: Sequence[int]) -> None:
        """Graceful stop: inflight rows back to pending, no attempt counted."""
        with self._write("release") as conn:
            conn.executemany(
                "UPDATE jobs SET state = 'pending' WHERE state = 'inflight' AND id = ?",
                [(i,) for i in ids])

    # -- dead letters ---------------------------------------------------------------------

    def retry_dead(self, target: str | None, paths: Sequence[str] | None,
                   now: float | None = None) -> int:
        """Dead letters (of `target`, of `paths`; None = all) back to pending, due at once,
        attempts 0."""
        stamp = time.time() if now is None else now
        with self._write("retry") as conn:
            return _each_dead(
                conn, "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = 0,"
                " updated_at = ?3 WHERE state = 'dead' AND (?1 IS NULL OR target = ?1)"
                " AND (?2 IS NULL OR path = ?2)", target, paths, stamp)

    def drop_dead(self, target: str | None, paths: Sequence[str] | None) -> int:
        """Delete dead letters and acknowledge lost paths (of `target`, of `paths`)."""
        with self._write("drop") as conn:
            return _each_dead(
                conn, "DELETE FROM jobs WHERE state = 'dead' AND (?1 IS NULL OR target = ?1)"
                " AND (?2 IS NULL OR path = ?2)", target, paths, None
            ) + drop_lost(conn, target, paths)

    # -- observability --------------------------------------------------------------------

    def stats(self, now: float, targets: Iterable[str] = ()) -> dict[str, TargetStats]:
        """Per target: counts by state, age of the oldest pending row, newest error.
        `targets` are included even when they have no rows."""
        with self._lock:
            conn = self._conn
            counts: dict[str, dict[str, int]] = {t: {} for t in targets}
            for target, state, n in conn.execute(
                    "SELECT target, state, count(*) FROM jobs GROUP BY target, state"):
                counts.setdefault(target, {})[state] = n
            errors = {t: (m, at) for t, m, at in
                      conn.execute("SELECT target, message, at FROM last_errors")}
            losses = loss_counts(conn)
            for target in losses:
                counts.setdefault(target, {})
            out = {}
            for target, by_state in sorted(counts.items()):
                oldest = conn.execute(
                    "SELECT min(enqueued_at) FROM jobs WHERE target = ? AND state = 'pending'",
                    (target,)).fetchone()[0]
                message, at = errors.get(target, (None, None))
                lost = losses.get(target, {})
                out[target] = TargetStats(
                    pending=by_state.get("pending", 0), inflight=by_state.get("inflight", 0),
                    done=by_state.get("done", 0), dead=by_state.get("dead", 0),
                    skipped=by_state.get("skipped", 0),
                    oldest_pending_age=None if oldest is None else max(0.0, now - oldest),
                    last_error=message, last_error_at=at,
                    gone=lost.get("gone", 0), released=lost.get("released", 0))
            return out

    def jobs(self, target: str | None = None) -> list[tuple[str, str, JobState, int]]:
        """(path, target, state, attempts) of every row, for tests and debugging."""
        with self._lock:
            return list(self._conn.execute(
                "SELECT path, target, state, attempts FROM jobs"
                " WHERE ?1 IS NULL OR target = ?1 ORDER BY id", (target,)))


def _private_file(path: Path) -> None:
    """Create the database 0600 (SQLite gives its -wal and -shm files the same mode) whatever
    the umask, and take read access from others on an existing one: the queue names every
    build and its errors, and a state directory may be created world-readable by hand."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        mode = os.fstat(fd).st_mode & 0o777
        if mode & 0o007:
            os.fchmod(fd, mode & ~0o007)
    finally:
        os.close(fd)


def _each_dead(conn: sqlite3.Connection, sql: str, target: str | None,
               paths: Sequence[str] | None, extra: object) -> int:
    """Run `sql` (?1: target or NULL for all, ?2: path or NULL for all, ?3: `extra`) once
    for all paths, or once per given path."""
    tail = () if extra is None else (extra,)
    if paths is None:
        return conn.execute(sql, (target, None, *tail)).rowcount
    return conn.executemany(sql, [(target, p, *tail) for p in paths]).rowcount
