"""The SQLite queue: one row per (store path, target), moved through its states by the daemon.

States: `pending` (waiting, due at `next_attempt_at`) -> `inflight` (claimed by a worker) ->
`done` | `skipped` (filtered at upload) | `dead` (dead letter) | back to `pending` (retry with
backoff). `attempts` counts failed attempts: `fail` increments it, `claim` does not.

Durability: WAL with synchronous=FULL, so a commit (and the hook's ack, sent after it) survives
power loss, not only a crash of the process. Writes run in `BEGIN IMMEDIATE` transactions with
a busy timeout, so several processes may share the file. The connection, its pragmas and the
bounded WAL: dbconn.py. A write the disk refuses raises QueueFull and sets `full_since` until
a write succeeds again.

Thread safety: one connection per QueueStore, guarded by a lock; every method may be called
from any thread (the daemon calls it from asyncio via `asyncio.to_thread`). Calls are short:
claim and stats are index lookups, also with 100,000 rows.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ..errors import QueueError, QueueFull
from ..wire.protocol import TargetStats
from . import dbconn
from .admin import JobState, QueueAdmin
from .derivations import CLAIMABLE, DerivationLedger, add_derivations
from .ledger import RootLedger, record_lost, unlose
from .migrations import SCHEMA_VERSION, migrate
from .watch import PathWatch, claim_priority

__all__ = ["SCHEMA_VERSION", "Job", "JobState", "QueueStore", "TargetStats"]

STATES: tuple[JobState, ...] = ("pending", "inflight", "done", "dead", "skipped")

_CLAIM = (  # built from constants only
    "SELECT id, path, target, attempts, drv, enqueued_at, size, output FROM jobs"  # noqa: S608
    " WHERE target = ? AND state = 'pending' AND next_attempt_at <= ?"
    f" AND priority = 0 AND {CLAIMABLE} ORDER BY next_attempt_at, id LIMIT ?")


@dataclass(frozen=True)
class Job:
    id: int
    path: str
    target: str
    attempts: int  # failed attempts so far
    drv: str | None
    enqueued_at: float
    size: int | None
    output: str | None = None  # the output name of `drv` this path is (None: not known)


class QueueStore(RootLedger, PathWatch, DerivationLedger, QueueAdmin):
    """The queue database. See the module docstring for durability and thread safety.
    GC roots and lost paths: ledger.py. Waiters' progress and priority: watch.py.
    Derivations waiting for their outputs: derivations.py. Dead letters, orphaned targets
    and counts: admin.py."""

    def __init__(self, db_path: Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(db_path)
        self._lock = threading.Lock()
        self._conn = dbconn.connect(self.path, busy_timeout)
        # Since when writes are refused for want of space (None: they are not).
        self.full_since: float | None = None
        self._migrate()

    def close(self) -> None:
        with self._lock:  # the last connection closed checkpoints and removes the WAL
            self._conn.close()

    def __enter__(self) -> QueueStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; sqlite errors become QueueError naming the operation, a
        full disk QueueFull (rolled back, whatever failed: a commit SQLite refused may leave
        the transaction open, and every later BEGIN would fail)."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                if dbconn.disk_full(exc):
                    self._refused(what, exc)
                raise QueueError(f"queue {self.path}: {what} failed: {exc}") from exc
            self.full_since = None

    @contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        """The connection for reads; sqlite errors become QueueError, as for writes: a
        raw sqlite3 error used to escape and end the task that read (issue 22)."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise QueueError(f"queue {self.path}: {what} failed: {exc}") from exc

    def _refused(self, what: str, exc: sqlite3.Error) -> NoReturn:
        """The disk is full: a checkpoint lets the next writer start the WAL over in the
        space it holds already (it fails too when the database file itself must grow)."""
        if self.full_since is None:
            self.full_since = time.time()
        with suppress(sqlite3.Error):
            dbconn.checkpoint(self._conn)
        raise QueueFull(f"queue {self.path}: {what} failed: {exc}") from exc

    def checkpoint(self) -> tuple[int, int]:
        """The scheduled checkpoint (dbconn.py): (frames in the WAL, frames copied)."""
        with self._lock:
            try:
                return dbconn.checkpoint(self._conn)
            except sqlite3.Error as exc:
                raise QueueError(f"queue {self.path}: checkpoint failed: {exc}") from exc

    def disk_usage(self) -> int:
        """Bytes on disk: database, WAL and shared memory."""
        return dbconn.disk_usage(self.path)

    def _migrate(self) -> None:
        with self._write("schema migration") as conn:
            migrate(conn, self.path)

    def schema_version(self) -> int:
        with self._read("schema version") as conn:
            return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])

    # -- producers ------------------------------------------------------------------------

    def enqueue(self, paths: Iterable[str], targets: Sequence[str], now: float, *,
                drv: str | None = None,
                derivations: Sequence[tuple[str, str]] = ()) -> int:
        """Queue every path for every target in one transaction; returns rows created or
        revived, plus derivations (installable, drv) newly waiting for resolution times
        targets. An existing row is left alone unless it is dead: a new build of a dead path
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
            if derivations:
                created += add_derivations(conn, derivations, now, unique, drv) * len(targets)
            return created

    def settled_rows(self, paths: Sequence[str], targets: Sequence[str], *,
                     skipped: bool = False) -> dict[str, list[str]]:
        """target -> those of `paths` whose row for it is done (and skipped, with
        `skipped`): what `push` looks up in the cache (cachecheck.py)."""
        states = ("done", "skipped") if skipped else ("done",)
        out: dict[str, list[str]] = {}
        with self._read("settled rows") as conn:
            for path, target in conn.execute(
                    "SELECT path, target FROM jobs WHERE path IN (SELECT value FROM"
                    " json_each(?1)) AND target IN (SELECT value FROM json_each(?2))"
                    " AND state IN (SELECT value FROM json_each(?3)) ORDER BY id",
                    (json.dumps(list(paths)), json.dumps(list(targets)), json.dumps(states))):
                out.setdefault(target, []).append(path)
        return out

    def requeue(self, rows: Mapping[str, Sequence[str]], now: float) -> int:
        """Settled rows (target -> paths) back to pending, due now, attempts 0: the target
        lacks the path after all, or `push --force`. Returns rows moved."""
        with self._write("requeue") as conn:
            return int(conn.executemany(
                "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = ?1,"
                " enqueued_at = ?1, updated_at = ?1, last_error = NULL"
                " WHERE path = ?2 AND target = ?3 AND state IN ('done', 'skipped')",
                [(now, p, t) for t, paths in rows.items() for p in paths]).rowcount)

    # -- workers --------------------------------------------------------------------------

    def recover(self) -> int:
        """After a crash: every inflight row back to pending (its upload may not have ended)."""
        with self._write("recover") as conn:
            return conn.execute("UPDATE jobs SET state = 'pending' WHERE state = 'inflight'"
                                ).rowcount

    def claim(self, target: str, limit: int, now: float, *,
              horizon: float | None = None) -> list[Job]:
        """Move up to `limit` due pending rows of `target` to inflight, oldest due first,
        rows someone waits for (watch.py) before the rest. `horizon`: the longest backoff;
        a row due later than `now + horizon` was scheduled before the wall clock stepped
        back, and is due now (times are epoch seconds, kept across restarts and reboots,
        so they cannot be monotonic; a step back must not delay retries by its size)."""
        with self._write("claim") as conn:
            if horizon is not None:
                conn.execute("UPDATE jobs SET next_attempt_at = ?2 WHERE target = ?1"
                             " AND state = 'pending' AND next_attempt_at > ?2 + ?3",
                             (target, now, horizon))
            rows = claim_priority(conn, target, limit, now)
            rows += conn.execute(_CLAIM, (target, now, limit - len(rows))).fetchall()
            conn.executemany("UPDATE jobs SET state = 'inflight', updated_at = ? WHERE id = ?",
                             [(now, r[0]) for r in rows])
        return [Job(*r) for r in rows]

    def next_due(self, target: str) -> float | None:
        """When the earliest pending row of `target` is due (None: nothing pending)."""
        with self._read("next due") as conn:
            row = conn.execute(
                "SELECT min(next_attempt_at) FROM jobs WHERE target = ? AND state = 'pending'",
                (target,)).fetchone()
        return None if row[0] is None else float(row[0])

    def complete(self, ids: Sequence[int], now: float, *,
                 sizes: Mapping[int, int] | None = None) -> None:
        """Uploaded. `sizes` (id -> bytes), when known, feeds the metrics. Only inflight
        rows move (as in skip and fail): a row some other actor put back to pending or
        dropped meanwhile is not this upload's to settle. A row marked `again`
        (derivations.py: a realisation learnt during its upload) goes once more."""
        with self._write("complete") as conn:
            conn.executemany(
                "UPDATE jobs SET state = CASE again WHEN 0 THEN 'done' ELSE 'pending' END,"
                " again = 0, next_attempt_at = ?1, updated_at = ?1"
                " WHERE id = ?2 AND state = 'inflight'", [(now, i) for i in ids])
            if sizes:
                conn.executemany("UPDATE jobs SET size = ? WHERE id = ?",
                                 [(size, i) for i, size in sizes.items()])

    def skip(self, ids: Sequence[int], reason: str, now: float) -> None:
        """Filtered out at upload time (e.g. already served by an upstream cache)."""
        with self._write("skip") as conn:
            conn.executemany(
                "UPDATE jobs SET state = 'skipped', last_error = ?, updated_at = ? WHERE id = ?"
                " AND state = 'inflight'",
                [(reason, now, i) for i in ids])

    def fail(self, ids: Sequence[int], error: str, now: float,
             retry_at: float | None) -> None:
        """One failed attempt: pending again from `retry_at`, or a dead letter when None."""
        state = "dead" if retry_at is None else "pending"
        with self._write("fail") as conn:
            conn.executemany(
                "UPDATE jobs SET state = ?1, next_attempt_at = coalesce(?2, next_attempt_at),"
                " attempts = attempts + 1, last_error = ?3, last_error_at = ?4,"
                " updated_at = ?4 WHERE id = ?5 AND state = 'inflight'",
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
