"""The queue store's bookkeeping of GC roots and lost paths (a mixin of store.QueueStore).

A path is rooted while one of its rows is open (pending, inflight, dead) and the cap has not
released its root (`jobs.root_released_at`). A row whose path left the local store before
its upload is moved to `lost` (with whether its root had been released), where `status`
counts it and `wait` sees it, until a person drops it or a new build of the path queues it
again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

OPEN_STATES = ("pending", "inflight", "dead")

MIGRATION_2 = """
    ALTER TABLE jobs ADD COLUMN root_released_at REAL;
    CREATE TABLE lost (
        path TEXT NOT NULL,
        target TEXT NOT NULL,
        at REAL NOT NULL,
        released INTEGER NOT NULL,
        PRIMARY KEY (path, target)
    );
"""


@dataclass(frozen=True)
class RootedPath:
    """One rooted path: queued since `since` (its oldest open row), `size` NAR bytes (None:
    not measured yet)."""

    path: str
    since: float
    size: int | None


class _Base(Protocol):
    _configured: str | None

    def _write(self, what: str) -> AbstractContextManager[sqlite3.Connection]: ...

    def _read(self, what: str) -> AbstractContextManager[sqlite3.Connection]: ...


# Only rows of configured targets hold a root (admin.py: orphaned targets): the named
# parameter :configured is a JSON list, or NULL for all.


class RootLedger:
    """Methods QueueStore gets for the GC roots; see the module docstring."""

    def rooted_paths(self: _Base) -> list[RootedPath]:
        """Every path that should be a root now, oldest first."""
        with self._read("rooted paths") as conn:
            rows = conn.execute(
                "SELECT path, min(enqueued_at), max(size) FROM jobs WHERE state IN"
                " ('pending', 'inflight', 'dead') AND root_released_at IS NULL"
                " AND (:configured IS NULL OR target IN (SELECT value FROM json_each(:configured)))"
                " GROUP BY path ORDER BY min(enqueued_at), path",
                {"configured": self._configured}).fetchall()
        return [RootedPath(p, float(since), size) for p, since, size in rows]

    def set_sizes(self: _Base, sizes: Mapping[str, int]) -> None:
        """NAR bytes per path, measured for the cap (also what the metrics count)."""
        with self._write("set sizes") as conn:
            conn.executemany("UPDATE jobs SET size = ? WHERE path = ? AND size IS NULL",
                             [(size, path) for path, size in sizes.items()])

    def release_roots(self: _Base, paths: Sequence[str], now: float) -> int:
        """Mark the roots of `paths` released by the cap; returns rows marked."""
        with self._write("release roots") as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE jobs SET root_released_at = ? WHERE path = ? AND state IN"
                " ('pending', 'inflight', 'dead')"
                " AND root_released_at IS NULL", [(now, p) for p in paths])
            return conn.total_changes - before

    def uploaded(self: _Base, paths: Sequence[str]) -> set[str]:
        """Those of `paths` that have rows and every row done or skipped: every target has
        them (or an upstream cache serves them). Orphaned rows do not count."""
        out = set()
        with self._read("uploaded paths") as conn:
            for path in paths:
                row = conn.execute(
                    "SELECT count(*), sum(state IN ('done', 'skipped')) FROM jobs"
                    " WHERE path = :path AND (:configured IS NULL"
                    " OR target IN (SELECT value FROM json_each(:configured)))",
                    {"path": path, "configured": self._configured}).fetchone()
                if row[0] and row[0] == row[1]:
                    out.add(path)
        return out

    def lost(self: _Base, target: str | None = None) -> list[tuple[str, str, bool]]:
        """(path, target, root released by the cap) of every lost row."""
        with self._read("lost paths") as conn:
            return [(p, t, bool(r)) for p, t, r in conn.execute(
                "SELECT path, target, released FROM lost WHERE ?1 IS NULL OR target = ?1"
                " ORDER BY at, path", (target,))]


def record_lost(conn: sqlite3.Connection, ids: Sequence[int], now: float) -> None:
    """Inside forget's transaction: keep a trace of each row before it is deleted."""
    conn.executemany(
        "INSERT OR REPLACE INTO lost (path, target, at, released)"
        " SELECT path, target, ?, root_released_at IS NOT NULL FROM jobs WHERE id = ?",
        [(now, i) for i in ids])


def unlose(conn: sqlite3.Connection, paths: Sequence[str], targets: Sequence[str]) -> None:
    """Inside enqueue's transaction: a path queued again is no longer lost."""
    conn.executemany("DELETE FROM lost WHERE path = ? AND target = ?",
                     [(p, t) for p in paths for t in targets])


def drop_lost(conn: sqlite3.Connection, target: str | None,
              paths: Sequence[str] | None) -> int:
    """Inside drop's transaction: a person acknowledges lost paths."""
    sql = "DELETE FROM lost WHERE (?1 IS NULL OR target = ?1) AND (?2 IS NULL OR path = ?2)"
    if paths is None:
        return conn.execute(sql, (target, None)).rowcount
    return conn.executemany(sql, [(target, p) for p in paths]).rowcount


def loss_counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """target -> {"gone": n, "released": n} (TargetStats fields), only targets with some."""
    out: dict[str, dict[str, int]] = {}
    for kind, sql in (
            ("gone", "SELECT target, count(*) FROM lost GROUP BY target"),
            ("released", "SELECT target, count(*) FROM jobs WHERE state IN"
                         " ('pending', 'inflight', 'dead')"
                         " AND root_released_at IS NOT NULL GROUP BY target"
                         " UNION ALL SELECT target, count(*) FROM lost WHERE released"
                         " GROUP BY target")):
        for target, n in conn.execute(sql):
            place = out.setdefault(target, {})
            place[kind] = place.get(kind, 0) + n
    return out
