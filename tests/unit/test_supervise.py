"""Supervised tasks (issue 22): an unexpected exception is logged with its traceback,
counted, and the task restarted with a backoff; a target's loop survives a failed read."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from nix_push_queue.daemon.clock import FakeClock
from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.daemon.supervise import RESTART_MAX, supervise
from nix_push_queue.errors import QueueError
from tests.unit.test_worker import T0, FakeUploader, make_worker, sp, states


class Crashes:
    def __init__(self) -> None:
        self.tasks: list[str] = []

    def task_crashed(self, task: str) -> None:
        self.tasks.append(task)


def test_restarts_with_doubling_backoff_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    waits: list[float] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 4:
            raise RuntimeError(f"crash {len(runs)}")

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    crashes = Crashes()
    with caplog.at_level(logging.ERROR):
        asyncio.run(supervise("t", flaky, crashes, sleep=sleep, monotonic=lambda: 0.0))
    assert len(runs) == 4  # returned normally the fourth time: not restarted again
    assert waits == [1.0, 2.0, 4.0]
    assert crashes.tasks == ["t", "t", "t"]
    assert "task t failed unexpectedly" in caplog.text
    assert "RuntimeError: crash 3" in caplog.text and "Traceback" in caplog.text


def test_backoff_starts_over_after_a_long_good_run() -> None:
    clock = iter([0.0, 0.0, 0.0, RESTART_MAX + 1.0, 0.0, 0.0])
    waits: list[float] = []
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("x")

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    asyncio.run(supervise("t", flaky, None, sleep=sleep, monotonic=lambda: next(clock)))
    assert waits == [1.0, 1.0]


class FlakyStore(QueueStore):
    """A real store whose next_due fails a given number of times, then works."""

    failures: list[BaseException]

    def next_due(self, target: str) -> float | None:
        if self.failures:
            raise self.failures.pop(0)
        return super().next_due(target)


@pytest.mark.parametrize("error", [QueueError("database is locked"), RuntimeError("bug")])
def test_a_target_loop_survives_a_failed_read(tmp_path: Path, error: BaseException) -> None:
    """main: one failed next_due ended the target's loop for good; rows stayed pending."""
    store = FlakyStore(tmp_path / "q.sqlite")
    store.failures = [error]
    crashes = Crashes()

    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock)
        worker = make_worker(store, up, clock, batch_wait=0.0)
        worker._crashes = crashes
        worker.start()
        await clock.advance(5)  # idle: the loop reads next_due and fails once
        assert not store.failures
        store.enqueue([sp(1)], ["t"], clock.now())
        worker.notify()
        await clock.advance(5)
        assert states(store) == {sp(1): ("done", 0)}
        await worker.stop(grace=1)

    asyncio.run(main())
    # An expected database error is a warning; anything else a counted crash.
    assert crashes.tasks == ([] if isinstance(error, QueueError) else ["worker-t"])


