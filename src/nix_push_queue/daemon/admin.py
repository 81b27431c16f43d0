"""The queue store's dead letters, orphaned targets and counts (a mixin of store.QueueStore).

A target removed from the config leaves its rows behind: nobody uploads them any more. They
are *orphaned*: `status` shows them as such, `wait` does not wait for them, the GC roots of
their paths do not count them (ledger.py), and `drop --orphaned` deletes them. Which targets
are configured is the daemon's to say (`configure`); a store never told counts every target
as configured.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Literal, Protocol

from ..wire.protocol import TargetStats
from .derivations import unresolved_count
from .ledger import drop_lost, loss_counts

JobState = Literal["pending", "inflight", "done", "dead", "skipped"]


class _Base(Protocol):
    _configured: str | None  # JSON list of the configured targets, None: all

    def _write(self, what: str) -> AbstractContextManager[sqlite3.Connection]: ...

    def _read(self, what: str) -> AbstractContextManager[sqlite3.Connection]: ...


class QueueAdmin:
    """Methods QueueStore gets for people and `status`; see the module docstring."""

    _configured: str | None = None  # JSON list of the configured targets, None: all

    def configure(self: _Base, targets: Sequence[str]) -> None:
        """The targets in the config: rows of any other one are orphaned."""
        self._configured = json.dumps(sorted(targets))

    def drop_orphaned(self: _Base) -> int:
        """Delete every row and lost record of targets no longer configured."""
        if self._configured is None:
            return 0
        with self._write("drop orphaned") as conn:
            args = (self._configured,)
            conn.execute("DELETE FROM last_errors WHERE target NOT IN"
                         " (SELECT value FROM json_each(?))", args)
            rows = conn.execute("DELETE FROM jobs WHERE target NOT IN"
                                " (SELECT value FROM json_each(?))", args).rowcount
            lost = conn.execute("DELETE FROM lost WHERE target NOT IN"
                                " (SELECT value FROM json_each(?))", args).rowcount
            return int(rows + lost)

    def retry_dead(self: _Base, target: str | None, paths: Sequence[str] | None,
                   now: float | None = None) -> int:
        """Dead letters (of `target`, of `paths`; None = all) back to pending, due at once,
        attempts 0."""
        stamp = time.time() if now is None else now
        with self._write("retry") as conn:
            return _each_dead(
                conn, "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = 0,"
                " updated_at = ?3 WHERE state = 'dead' AND (?1 IS NULL OR target = ?1)"
                " AND (?2 IS NULL OR path = ?2)", target, paths, stamp)

    def drop_dead(self: _Base, target: str | None, paths: Sequence[str] | None) -> int:
        """Delete dead letters and acknowledge lost paths (of `target`, of `paths`)."""
        with self._write("drop") as conn:
            return _each_dead(
                conn, "DELETE FROM jobs WHERE state = 'dead' AND (?1 IS NULL OR target = ?1)"
                " AND (?2 IS NULL OR path = ?2)", target, paths, None
            ) + drop_lost(conn, target, paths)

    # -- observability --------------------------------------------------------------------

    def stats(self: _Base, now: float, targets: Iterable[str] = ()) -> dict[str, TargetStats]:
        """Per target: counts by state, age of the oldest pending row, newest error.
        `targets` are included even when they have no rows; others are orphaned when the
        store was told which are configured."""
        configured = None if self._configured is None else set(json.loads(self._configured))
        with self._read("status") as conn:
            counts: dict[str, dict[str, int]] = {t: {} for t in targets}
            for target, state, n in conn.execute(
                    "SELECT target, state, count(*) FROM jobs GROUP BY target, state"):
                counts.setdefault(target, {})[state] = n
            errors = {t: (m, at) for t, m, at in
                      conn.execute("SELECT target, message, at FROM last_errors")}
            losses = loss_counts(conn)
            # Derivations still to resolve: pending work of every configured target.
            unresolved = unresolved_count(conn)
            for target in losses:
                counts.setdefault(target, {})
            out = {}
            for target, by_state in sorted(counts.items()):
                oldest = conn.execute(
                    "SELECT min(enqueued_at) FROM jobs WHERE target = ? AND state = 'pending'",
                    (target,)).fetchone()[0]
                message, at = errors.get(target, (None, None))
                lost = losses.get(target, {})
                orphaned = configured is not None and target not in configured
                out[target] = TargetStats(
                    pending=by_state.get("pending", 0) + (0 if orphaned else unresolved),
                    inflight=by_state.get("inflight", 0),
                    done=by_state.get("done", 0), dead=by_state.get("dead", 0),
                    skipped=by_state.get("skipped", 0),
                    oldest_pending_age=None if oldest is None else max(0.0, now - oldest),
                    last_error=message, last_error_at=at,
                    gone=lost.get("gone", 0), released=lost.get("released", 0),
                    orphaned=orphaned)
            return out

    def jobs(self: _Base, target: str | None = None) -> list[tuple[str, str, JobState, int]]:
        """(path, target, state, attempts) of every row, for tests and debugging."""
        with self._read("list rows") as conn:
            return list(conn.execute(
                "SELECT path, target, state, attempts FROM jobs"
                " WHERE ?1 IS NULL OR target = ?1 ORDER BY id", (target,)))


def _each_dead(conn: sqlite3.Connection, sql: str, target: str | None,
               paths: Sequence[str] | None, extra: object) -> int:
    """Run `sql` (?1: target or NULL for all, ?2: path or NULL for all, ?3: `extra`) once
    for all paths, or once per given path."""
    tail = () if extra is None else (extra,)
    if paths is None:
        return conn.execute(sql, (target, None, *tail)).rowcount
    return conn.executemany(sql, [(target, p, *tail) for p in paths]).rowcount
