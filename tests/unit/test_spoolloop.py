"""daemon/spoolloop.py with a stand-in spooler: a failed ingestion is logged once and retried
at the next poll, the queue is woken only when files were taken, and an entry renamed into
the directory is ingested (through the real inotify watch) well before SPOOL_FORCE."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from nix_push_queue.daemon import spoolloop
from nix_push_queue.daemon.spoolloop import SpoolLoop, dir_signature
from nix_push_queue.errors import NpqError


class FakeSpooler:
    def __init__(self, results: list[int | NpqError]) -> None:
        self.results = results
        self.calls = 0

    def ingest(self) -> int:
        self.calls += 1
        result = self.results.pop(0) if self.results else 0
        if isinstance(result, NpqError):
            raise result
        return result


def test_failures_are_logged_once_and_recovery_once(caplog: pytest.LogCaptureFixture,
                                                    tmp_path: Path) -> None:
    woken: list[int] = []
    spooler = FakeSpooler([NpqError("disk full"), NpqError("disk full"), 2, 0])
    loop = SpoolLoop(str(tmp_path), spooler, lambda: woken.append(1))
    with caplog.at_level(logging.INFO, logger=spoolloop.__name__):
        results = [asyncio.run(loop.ingest()) for _ in range(4)]
    assert results == [False, False, True, True]
    assert woken == [1]  # only the ingestion that took files wakes the queue
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["spool ingestion failed (will retry): disk full",
                        "spool ingestion works again"]


def test_an_entry_renamed_in_is_ingested_at_once(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # No poll within the test's 5 s: only the inotify watch can wake the loop.
    monkeypatch.setattr(spoolloop, "SPOOL_POLL", 30.0)
    monkeypatch.setattr(spoolloop, "SPOOL_FORCE", 3600.0)
    spooler = FakeSpooler([])
    taken = asyncio.Event()

    async def scenario() -> None:
        loop = SpoolLoop(str(tmp_path), spooler, taken.set)
        spooler.results.append(1)
        task = asyncio.create_task(loop.loop())
        await asyncio.sleep(0.2)
        (tmp_path / ".x.tmp").write_text("/nix/store/x\n")
        os.rename(tmp_path / ".x.tmp", tmp_path / "x.spool")
        try:
            await asyncio.wait_for(taken.wait(), timeout=5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert spooler.calls >= 1


def test_the_first_poll_ingests_even_without_a_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry written after the start-up ingestion but before the loop's watch has no
    event and no later change of the directory: the first poll takes it (before, without
    a failed start-up ingestion, it waited for SPOOL_FORCE, 60 s). Once, and then nothing until
    a change."""
    monkeypatch.setattr(spoolloop, "SPOOL_POLL", 0.05)
    monkeypatch.setattr(spoolloop, "SPOOL_FORCE", 3600.0)
    spooler = FakeSpooler([])

    async def scenario() -> int:
        spooler.calls = 0
        task = asyncio.create_task(SpoolLoop(str(tmp_path), spooler, lambda: None)
                                   .loop())
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return spooler.calls

    assert asyncio.run(scenario()) == 1


def test_dir_signature_of_a_missing_directory(tmp_path: Path) -> None:
    assert dir_signature(str(tmp_path / "gone")) is None
    assert dir_signature(str(tmp_path)) is not None
