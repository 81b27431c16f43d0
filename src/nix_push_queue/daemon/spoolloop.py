"""The daemon's spool loop: ingest the spool directory when an entry arrives (inotify,
dirwatch.py), when the directory changed (a poll each SPOOL_POLL seconds), and at least every
SPOOL_FORCE seconds; an ingestion that failed (disk full, database locked) is retried at the
next poll, and each problem is logged once, not at every poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Protocol

from ..errors import NpqError
from .dirwatch import DirWatch

log = logging.getLogger(__name__)

SPOOL_POLL = 1.0  # seconds between looks at the spool directory
SPOOL_FORCE = 60.0  # ingest even without a visible directory change this often


class Ingester(Protocol):
    def ingest(self) -> int:
        """Ingest every spool file (blocking); the number taken. Raises NpqError to retry."""
        ...


class SpoolLoop:
    """Moves spool entries into the queue; `queued` is called when an ingestion added any."""

    def __init__(self, directory: str, spooler: Ingester, queued: Callable[[], None]) -> None:
        self._directory = directory
        self._spooler = spooler
        self._queued = queued
        self._failing: str | None = None

    async def ingest(self) -> bool:
        """Ingest every spool file; False when that failed and must be retried."""
        try:
            files = await asyncio.to_thread(self._spooler.ingest)
        except NpqError as exc:
            if str(exc) != self._failing:
                log.error("spool ingestion failed (will retry): %s", exc)
            self._failing = str(exc)
            return False
        if self._failing is not None:
            log.info("spool ingestion works again")
            self._failing = None
        if files:
            self._queued()
        return True

    async def loop(self) -> None:
        """Ingest when an entry arrives (the hook's entries are queued within milliseconds)
        or the directory changed. The first poll always ingests: a start-up ingestion that
        failed is retried then (docs/faults.md: at the next poll, not SPOOL_FORCE later), and
        an entry that arrived after it but before the watch below, which has no event and is
        already in the directory's signature, is not left for SPOOL_FORCE (seen in CI under
        load, on trixie)."""
        watch = DirWatch.open(self._directory)
        seen: tuple[int, int] | None = (-1, -1)
        forced = time.monotonic()
        try:
            while True:
                woken = (await watch.wait(SPOOL_POLL) if watch is not None
                         else await asyncio.sleep(SPOOL_POLL, False))
                current = dir_signature(self._directory)
                if woken or current != seen or time.monotonic() - forced > SPOOL_FORCE:
                    # Taken before reading: a file renamed in while we read changes it again.
                    seen, forced = current, time.monotonic()
                    if not await self.ingest():
                        seen = (-1, -1)  # failed: retry at the next poll
        finally:
            if watch is not None:
                watch.close()


def dir_signature(directory: str) -> tuple[int, int] | None:
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns
