"""The queue database's connection: opening it, its pragmas, and keeping its WAL bounded.

SQLite's defaults let the WAL grow to about 4 MiB (1000 pages) before a checkpoint copies it
into the database, and never shrink the file afterwards. On a small state disk the daemon's
own WAL then fills the disk and every later commit fails. Here:

- the WAL is checkpointed on commit once it holds AUTOCHECKPOINT_PAGES (PASSIVE: it never
  waits for a reader), and on a schedule by the daemon (`checkpoint`, every
  CHECKPOINT_EVERY seconds), so what it holds moves into the database file soon;
- after a checkpoint the next writer starts the WAL over, and `journal_size_limit` cuts the
  file back to JOURNAL_SIZE_LIMIT: the WAL stays about that size, its space allocated, so
  later commits overwrite it in place even when the disk has filled meanwhile;
- a commit the disk refuses (SQLITE_FULL) is rolled back and raises QueueFull: the caller
  holds what it meant to record and tries again (the full-disk rule, docs/internals.md).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Literal

from ..errors import QueueError

AUTOCHECKPOINT_PAGES = 64  # 256 KiB with SQLite's 4 KiB pages
JOURNAL_SIZE_LIMIT = 512 * 1024  # bytes a reset WAL keeps
CHECKPOINT_EVERY = 30.0  # seconds between the daemon's scheduled checkpoints
_SQLITE_FULL = 13

CheckpointMode = Literal["PASSIVE", "RESTART", "TRUNCATE"]


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open (creating it 0600) the database in WAL mode with the pragmas above. Raises
    QueueError."""
    try:
        _private_file(path)
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
    except (sqlite3.Error, OSError) as exc:
        raise QueueError(f"queue {path}: cannot open: {exc}") from exc
    return conn


def disk_full(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused for want of space (SQLITE_FULL, any extended code)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == _SQLITE_FULL
    return "database or disk is full" in str(exc)


def checkpoint(conn: sqlite3.Connection, mode: CheckpointMode = "PASSIVE"
               ) -> tuple[int, int]:
    """Copy the WAL into the database; returns (frames in the WAL, frames copied). A reader
    may hold some back (PASSIVE never waits for it): the next checkpoint takes them."""
    _, log, done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return int(log), int(done)


def disk_usage(path: Path) -> int:
    """Bytes the database, its WAL and its shared-memory file take on disk."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.stat(f"{path}{suffix}").st_blocks * 512
        except FileNotFoundError:
            continue
    return total


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
