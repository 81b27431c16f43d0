"""Derivations waiting for their outputs (a mixin of store.QueueStore).

A hook or `push` may hand the queue a derivation installable (`DRV^*`, nix/installable.py)
instead of, or besides, output paths: on Nix 2.8 the outputs of a floating content-addressed
derivation cannot be named from the .drv, and a `.drv` may be gone or `nix-store` fail when
the hook runs. Each one waits in `derivations` until the resolver (resolver.py) asks Nix for
its outputs; then its output paths are queued with `drv` and `output` set, so the upload
copies `DRV^out` and Nix sends the realisations with the paths. Rows that arrived with a
`drv` but no output name are not claimed while their derivation waits (`CLAIMABLE`), so they
cannot leave without their realisations.

While it waits, a derivation counts as pending on every target (`status`, `wait`). When its
resolution finally fails, the output paths that came with it (a hook's OUT_PATHS) go without
realisations (logged); a derivation that came alone (the hook could not name its outputs)
moves to `lost` with the reason, where `status` and `wait` see it until a person drops it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

MIGRATION_4 = """
    CREATE TABLE derivations (
        installable TEXT PRIMARY KEY,
        drv TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at REAL NOT NULL,
        enqueued_at REAL NOT NULL,
        last_error TEXT
    );
    CREATE INDEX derivations_drv ON derivations (drv);
    CREATE INDEX derivations_due ON derivations (next_attempt_at);
    ALTER TABLE jobs ADD COLUMN output TEXT;
    ALTER TABLE lost ADD COLUMN reason TEXT
"""

# Every derivation output a path is known to be (a floating CA build runs the hook for the
# derivation Nix resolved and for the one asked for: same output, two realisations), and
# `again`: a row uploading while another of its derivations was resolved goes once more.
MIGRATION_5 = """
    CREATE TABLE job_derivations (
        path TEXT NOT NULL,
        drv TEXT NOT NULL,
        output TEXT NOT NULL,
        PRIMARY KEY (path, drv, output)
    );
    ALTER TABLE jobs ADD COLUMN again INTEGER NOT NULL DEFAULT 0
"""

# A `claim` condition (on table `jobs`): not a row whose derivation is still to be resolved.
CLAIMABLE = ("(jobs.output IS NOT NULL OR jobs.drv IS NULL"
             " OR NOT EXISTS (SELECT 1 FROM derivations d WHERE d.drv = jobs.drv))")


@dataclass(frozen=True)
class PendingDerivation:
    installable: str  # DRV^spec, the queue's spelling
    drv: str
    attempts: int  # failed resolutions so far
    enqueued_at: float


class _Base(Protocol):
    _lock: threading.Lock
    _conn: sqlite3.Connection

    def _write(self, what: str) -> AbstractContextManager[sqlite3.Connection]: ...


def add_derivations(conn: sqlite3.Connection, installables: Sequence[tuple[str, str]],
                    now: float, paths: Sequence[str] = (), drv: str | None = None) -> int:
    """Inside enqueue's transaction: (installable, drv) pairs to resolve; returns new ones.
    One queued again is no longer lost. `paths` came with `drv` (a hook's OUT_PATHS): they
    are remembered as its outputs, names not known yet (`output` ''), until it resolves."""
    before = conn.total_changes
    conn.executemany(
        "INSERT INTO derivations (installable, drv, attempts, next_attempt_at, enqueued_at)"
        " VALUES (?, ?, 0, ?, ?) ON CONFLICT (installable) DO NOTHING",
        [(i, d, now, now) for i, d in installables])
    created = conn.total_changes - before
    conn.executemany("DELETE FROM lost WHERE path = ?", [(i,) for i, _ in installables])
    if drv is not None:
        conn.executemany("INSERT OR IGNORE INTO job_derivations (path, drv, output)"
                         " VALUES (?, ?, '')", [(p, drv) for p in paths])
    return created


def unresolved_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM derivations").fetchone()[0])


class DerivationLedger:
    """Methods QueueStore gets for derivations; see the module docstring."""

    def due_derivations(self: _Base, now: float, limit: int) -> list[PendingDerivation]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT installable, drv, attempts, enqueued_at FROM derivations"
                " WHERE next_attempt_at <= ? ORDER BY next_attempt_at, enqueued_at LIMIT ?",
                (now, limit)).fetchall()
        return [PendingDerivation(*r) for r in rows]

    def unresolved(self: _Base) -> int:
        """Derivations waiting for their outputs."""
        with self._lock:
            return unresolved_count(self._conn)

    def next_derivation_due(self: _Base) -> float | None:
        with self._lock:
            row = self._conn.execute("SELECT min(next_attempt_at) FROM derivations").fetchone()
        return None if row[0] is None else float(row[0])

    def resolved(self: _Base, installable: str, drv: str, outputs: Mapping[str, str],
                 targets: Sequence[str], now: float) -> int:
        """The derivation's outputs (name -> path, already filtered) are known: queue each
        for every target with `drv` and `output`, name the output on rows that came without
        it, and forget the derivation; one transaction. A path uploaded already as another
        derivation's output goes again (only its realisation is new to the target). Returns
        rows created or revived."""
        rows = [(path, t, now, drv, name) for name, path in outputs.items() for t in targets]
        with self._write("resolve") as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO jobs (path, target, state, attempts, next_attempt_at,"
                " enqueued_at, updated_at, drv, output)"
                " VALUES (?1, ?2, 'pending', 0, ?3, ?3, ?3, ?4, ?5)"
                " ON CONFLICT (path, target) DO UPDATE SET state = 'pending', attempts = 0,"
                " next_attempt_at = excluded.next_attempt_at,"
                " enqueued_at = excluded.enqueued_at, updated_at = excluded.updated_at"
                " WHERE state = 'dead'", rows)
            created = conn.total_changes - before
            conn.executemany(
                "UPDATE jobs SET drv = ?1, output = ?2 WHERE path = ?3 AND output IS NULL",
                [(drv, name, path) for name, path in outputs.items()])
            for name, path in outputs.items():
                if conn.execute("INSERT OR IGNORE INTO job_derivations (path, drv, output)"
                                " VALUES (?, ?, ?)", (path, drv, name)).rowcount:
                    created += conn.execute(
                        "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = ?1,"
                        " updated_at = ?1 WHERE path = ?2 AND state = 'done'",
                        (now, path)).rowcount
                    conn.execute("UPDATE jobs SET again = 1 WHERE path = ? AND state ="
                                 " 'inflight'", (path,))
            conn.executemany("DELETE FROM lost WHERE path = ? AND target = ?",
                             [(p, t) for p in outputs.values() for t in targets])
            conn.execute("DELETE FROM derivations WHERE installable = ?", (installable,))
            conn.execute("DELETE FROM job_derivations WHERE drv = ? AND output = ''", (drv,))
            return created

    def derivations_of(self: _Base, paths: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """path -> every (derivation, output name) it is known to be."""
        out: dict[str, list[tuple[str, str]]] = {}
        with self._lock:
            for path, drv, output in self._conn.execute(
                    "SELECT path, drv, output FROM job_derivations WHERE output != ''"
                    " AND path IN (SELECT value FROM json_each(?)) ORDER BY path, drv, output",
                    (json.dumps(list(paths)),)):
                out.setdefault(path, []).append((drv, output))
        return out

    def resolution_failed(self: _Base, installable: str, error: str, now: float,
                          retry_at: float | None, targets: Sequence[str]) -> bool:
        """One failed resolution: again from `retry_at`, or (None) the end. Then, when
        output paths came with the derivation (a hook's OUT_PATHS), they are released to go
        without realisations (False); when nothing else of it is queued it is lost for every
        target with `error`, also each target's newest error (True)."""
        with self._write("resolution failure") as conn:
            if retry_at is not None:
                conn.execute(
                    "UPDATE derivations SET attempts = attempts + 1, next_attempt_at = ?,"
                    " last_error = ? WHERE installable = ?", (retry_at, error, installable))
                return False
            drv = conn.execute("SELECT drv FROM derivations WHERE installable = ?",
                               (installable,)).fetchone()
            conn.execute("DELETE FROM derivations WHERE installable = ?", (installable,))
            if drv is not None and conn.execute(
                    "DELETE FROM job_derivations WHERE drv = ? AND output = ''",
                    (drv[0],)).rowcount:
                return False
            conn.executemany(
                "INSERT OR REPLACE INTO lost (path, target, at, released, reason)"
                " VALUES (?, ?, ?, 0, ?)", [(installable, t, now, error) for t in targets])
            conn.executemany("INSERT OR REPLACE INTO last_errors (target, message, at)"
                             " VALUES (?, ?, ?)", [(t, error, now) for t in targets])
            return True

    def lost_reasons(self: _Base, target: str | None = None) -> list[tuple[str, str, str]]:
        """(path or installable, target, reason) of every lost row that has a reason."""
        with self._lock:
            return list(self._conn.execute(
                "SELECT path, target, reason FROM lost WHERE reason IS NOT NULL"
                " AND (?1 IS NULL OR target = ?1) ORDER BY at, path", (target,)))
