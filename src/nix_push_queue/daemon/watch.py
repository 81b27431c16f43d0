"""What waiters see (a mixin of store.QueueStore): where given paths stand per target, their
priority over the background backlog, and bytes pending and the recent upload rate for
`status`.

Priority: a client waiting for paths (`push --wait`, `wait --paths`, `verify`) marks their
pending rows; `claim` takes marked rows first, so a CI job's outputs do not queue behind
another job's thousands of paths. The mark stays on the row (a cancelled waiter leaves a few
paths ahead of the backlog; nothing worse).

Lookups go through the (path, target) index; the asked-for paths travel as one JSON
parameter (SQLite's json_each) rather than thousands of bound ones.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from ..wire.progress import PROBLEM_CAP, PathProblem, PathsProgress
from .derivations import CLAIMABLE

MIGRATION_3 = """
    ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX jobs_priority ON jobs (target, state, next_attempt_at) WHERE priority > 0;
    CREATE INDEX jobs_recent ON jobs (target, state, updated_at)
"""

# Rows of the asked-for paths, by target and state: count, known bytes, unsized, attempts.
_BY_STATE = """
    SELECT j.target, j.state, count(*), coalesce(sum(j.size), 0), sum(j.size IS NULL),
           sum(j.attempts)
    FROM json_each(?1) w JOIN jobs j ON j.path = w.value GROUP BY j.target, j.state
"""
_DEAD = """
    SELECT j.target, j.path, j.last_error FROM json_each(?1) w JOIN jobs j ON j.path = w.value
    WHERE j.state = 'dead' ORDER BY j.target, j.path
"""
_GONE = """
    SELECT l.target, l.path, l.released FROM json_each(?1) w JOIN lost l ON l.path = w.value
    ORDER BY l.target, l.path
"""
_MISSING = """
    SELECT w.value FROM json_each(?1) w WHERE NOT EXISTS
        (SELECT 1 FROM jobs j WHERE j.path = w.value AND j.target = ?2)
    AND NOT EXISTS (SELECT 1 FROM lost l WHERE l.path = w.value AND l.target = ?2)
    ORDER BY w.value
"""
_CLAIM_MARKED = (  # built from constants only
    "SELECT id, path, target, attempts, drv, enqueued_at, size, output FROM jobs"  # noqa: S608
    " WHERE target = ? AND state = 'pending' AND priority > 0 AND next_attempt_at <= ?"
    f" AND {CLAIMABLE} ORDER BY next_attempt_at, id LIMIT ?")
GONE_ERROR = "left the local store before its upload (garbage-collected)"


class _Base(Protocol):

    def _write(self, what: str) -> AbstractContextManager[sqlite3.Connection]: ...

    def _read(self, what: str) -> AbstractContextManager[sqlite3.Connection]: ...


class PathWatch:
    """Methods QueueStore gets for waiters; see the module docstring."""

    def prioritize(self: _Base, paths: Sequence[str]) -> int:
        """Mark the pending and in-flight rows of `paths`; returns rows newly marked."""
        with self._write("prioritize") as conn:
            return conn.execute(
                "UPDATE jobs SET priority = 1 WHERE priority = 0"
                " AND state IN ('pending', 'inflight')"
                " AND path IN (SELECT value FROM json_each(?))", (json.dumps(paths),)).rowcount

    def path_progress(self: _Base, paths: Sequence[str], targets: Sequence[str],
                      excluded: Callable[[str], bool]) -> dict[str, PathsProgress]:
        """Per target, where the distinct `paths` stand (see PathsProgress). A path that
        has no row and is not lost is `excluded` when `excluded(path)`, else `missing`."""
        wanted = json.dumps(list(dict.fromkeys(paths)))
        with self._read("path progress") as conn:
            counts: dict[str, dict[str, int]] = {t: {} for t in targets}
            for target, state, n, nbytes, unsized, attempts in conn.execute(_BY_STATE,
                                                                              (wanted,)):
                c = counts.setdefault(target, {})
                c[state] = n
                c["retries"] = c.get("retries", 0) + attempts
                c["bytes_total"] = c.get("bytes_total", 0) + nbytes
                c["unsized"] = c.get("unsized", 0) + unsized
                if state in ("done", "skipped"):
                    c["bytes_done"] = c.get("bytes_done", 0) + nbytes
            for c in counts.values():  # a dead letter's last failure was not retried
                c["retries"] = max(0, c.get("retries", 0) - c.get("dead", 0))
            problems: dict[str, list[PathProblem]] = {t: [] for t in counts}
            for target, path, error in conn.execute(_DEAD, (wanted,)):
                problems.setdefault(target, []).append(PathProblem(path, "dead", error))
            for target, path, released in conn.execute(_GONE, (wanted,)):
                counts.setdefault(target, {})["gone"] = counts[target].get("gone", 0) + 1
                why = GONE_ERROR + (" after the GC roots cap released it" if released else "")
                problems.setdefault(target, []).append(PathProblem(path, "gone", why))
            for target, c in counts.items():
                for (path,) in conn.execute(_MISSING, (wanted, target)):
                    kind = "excluded" if excluded(path) else "missing"
                    c[kind] = c.get(kind, 0) + 1
                    if kind == "missing":
                        problems[target].append(PathProblem(
                            path, "missing", "not in the queue (never pushed, or dropped)"))
        total = len(json.loads(wanted))
        # Rows of a target no longer configured are nobody's to upload: not counted.
        return {t: PathsProgress(total=total, **counts[t],
                                 problems=tuple(problems[t][:PROBLEM_CAP]))
                for t in sorted(targets)}

    def throughput(self: _Base, now: float, window: float
                   ) -> dict[str, tuple[int, int, int, int]]:
        """target -> (bytes pending, unsized pending rows, paths and bytes uploaded in the
        last `window` seconds)."""
        out: dict[str, tuple[int, int, int, int]] = {}
        with self._read("throughput") as conn:
            for target, nbytes, unsized in conn.execute(
                    "SELECT target, coalesce(sum(size), 0), sum(size IS NULL) FROM jobs"
                    " WHERE state IN ('pending', 'inflight') GROUP BY target"):
                out[target] = (nbytes, unsized, 0, 0)
            for target, n, nbytes in conn.execute(
                    "SELECT target, count(*), coalesce(sum(size), 0) FROM jobs"
                    " WHERE state = 'done' AND updated_at >= ? GROUP BY target",
                    (now - window,)):
                pending = out.get(target, (0, 0, 0, 0))
                out[target] = (pending[0], pending[1], n, nbytes)
        return out


def claim_priority(conn: sqlite3.Connection, target: str, limit: int, now: float
                   ) -> list[tuple[int, str, str, int, str | None, float, int | None,
                                   str | None]]:
    """Inside claim's transaction: due marked rows of `target`, oldest due first."""
    return conn.execute(_CLAIM_MARKED, (target, now, limit)).fetchall()

