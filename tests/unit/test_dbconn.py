"""The queue database's connection (daemon/dbconn.py): the WAL stays bounded through many
commits, and a write the database refuses for want of space is rolled back whole, raises
QueueFull and leaves the store usable once there is room (SQLite's own SQLITE_FULL, from
`max_page_count`; the real full file system is tests/faults/test_small_state_disk.py)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from nix_push_queue.daemon import dbconn
from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.errors import QueueError, QueueFull


def sp(i: int) -> str:
    return f"/nix/store/{i:032d}-p{i}"


def test_pragmas(tmp_path: Path) -> None:
    conn = dbconn.connect(tmp_path / "q.sqlite", 5.0)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == dbconn.AUTOCHECKPOINT_PAGES
    assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == dbconn.JOURNAL_SIZE_LIMIT
    assert os.stat(tmp_path / "q.sqlite").st_mode & 0o777 == 0o600


def test_wal_stays_bounded_over_many_commits(tmp_path: Path) -> None:
    """3,000 paths through enqueue, claim and complete, one commit each step: the WAL never
    passes the limit plus one commit's worth (SQLite's default would let it reach ~4 MiB)."""
    store = QueueStore(tmp_path / "q.sqlite")
    wal = tmp_path / "q.sqlite-wal"
    peak = 0
    for i in range(0, 3000, 10):
        store.enqueue([sp(k) for k in range(i, i + 10)], ["a", "b"], float(i))
        for target in ("a", "b"):
            store.complete([j.id for j in store.claim(target, 10, float(i))], float(i))
        peak = max(peak, wal.stat().st_size)
    assert peak <= dbconn.JOURNAL_SIZE_LIMIT + 64 * 4096, peak
    log, done = store.checkpoint()
    assert log == done  # nothing held back: the WAL restarts at the next write
    assert store.stats(0.0)["a"].done == 3000


def test_a_refused_write_is_rolled_back_and_the_store_resumes(tmp_path: Path) -> None:
    store = QueueStore(tmp_path / "q.sqlite")
    store.enqueue([sp(0)], ["a"], 0.0)
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count={pages}")  # the database may not grow
    with pytest.raises(QueueFull, match="enqueue failed: database or disk is full"):
        store.enqueue([sp(i) for i in range(1, 2000)], ["a"], 1.0)
    assert store.full_since is not None
    assert isinstance(QueueFull("x"), QueueError)
    assert [p for p, *_ in store.jobs()] == [sp(0)]  # nothing half-written
    jobs = store.claim("a", 10, 2.0)  # writes that fit still work
    store._conn.execute("PRAGMA max_page_count=1073741823")
    store.enqueue([sp(i) for i in range(1, 2000)], ["a"], 3.0)
    store.complete([j.id for j in jobs], 4.0)
    assert store.full_since is None
    assert store.stats(5.0)["a"].pending == 1999


def test_disk_full_reads_the_error_code() -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13
    other = sqlite3.OperationalError("database is locked")
    other.sqlite_errorcode = 5
    assert dbconn.disk_full(full) and not dbconn.disk_full(other)
