"""The daemon's side of the spool: ingestion into the queue, and the counts `status` reports.

Entries that could not even be moved to the quarantine are remembered here and passed over
(and counted as quarantined, not as waiting) until the daemon restarts: otherwise `wait`
would wait on them forever, or each poll would try and log them again.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..errors import NpqError
from ..wire import spool_reader
from ..wire.protocol import SpoolStats
from .intake import Intake

log = logging.getLogger(__name__)


class SpoolMetrics(Protocol):
    def spool_quarantined(self, entries: int) -> None: ...


class Spooler:
    def __init__(self, spool_dir: str, intake: Intake,
                 metrics: SpoolMetrics | None = None) -> None:
        self.spool_dir = spool_dir
        self._intake = intake
        self._metrics = metrics
        self._skipped: set[str] = set()

    def ingest(self) -> int:
        """Ingest every spool file (blocking: call it in a thread); returns the files taken.
        Raises NpqError (disk, database) when it must be retried."""
        files, paths, bad, aside = spool_reader.ingest_spool(
            self.spool_dir, self._enqueue, self._intake.store_dir, self._skipped)
        if aside and self._metrics is not None:
            self._metrics.spool_quarantined(aside)
        if files or aside:
            log.info("ingested %d spool file(s): %d path(s), %d bad line(s), %d entr%s "
                     "quarantined", files, paths, bad, aside, "y" if aside == 1 else "ies")
        return files

    def _enqueue(self, paths: list[str]) -> None:
        self._intake.enqueue(paths, "spool")

    def stats(self) -> SpoolStats:
        """Counted now (blocking: a directory listing)."""
        try:
            pending, quarantined = spool_reader.count_spool(self.spool_dir, self._skipped)
        except NpqError as exc:
            return SpoolStats(error=str(exc)[:300])
        return SpoolStats(pending, quarantined)
