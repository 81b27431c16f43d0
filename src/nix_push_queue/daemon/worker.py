"""Takes batches from the queue store and hands them to the uploader.

One loop per target claims due rows (up to `queue.batch_size`, waiting `queue.batch_wait` for
a partial batch to fill); a semaphore bounds uploads at once to `queue.workers` overall. What
happens to a claimed batch (upload, bisection, retries, dead letters) is batch.py's.

Store calls are short but commit with fsync, so they run off the event loop (`offload`,
asyncio.to_thread by default; tests pass a direct call to stay deterministic).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..config.model import Queue, Target
from ..errors import QueueError, QueueFull
from . import supervise
from .batch import BatchRunner, Offload, RootRelease, WorkerMetrics, backoff_delay
from .clock import Clock
from .store import Job, QueueStore
from .supervise import CrashMetrics
from .uploader import Uploader

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["Worker", "WorkerMetrics", "backoff_delay", "split_even"]

# An idle target loop wakes on enqueue, when the store's next backoff expires, and at least
# this often as a safety net.
POLL_INTERVAL = 1.0
MIN_IDLE = 0.01


def split_even(jobs: list[T], parts: int) -> list[list[T]]:
    """`jobs` in exactly `parts` non-empty chunks (1 <= parts <= len(jobs)), sizes differing
    by at most one. Exactly: each chunk returns the one upload slot it was given, so fewer
    chunks than slots taken would leak slots for good (9 jobs over 8 slots as chunks of 2
    made 5 chunks and lost 3 slots; issue 22)."""
    size, extra = divmod(len(jobs), parts)
    out: list[list[T]] = []
    start = 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(jobs[start:end])
        start = end
    return out


class Worker:
    def __init__(self, store: QueueStore, uploader: Uploader, targets: Sequence[Target],
                 queue: Queue, clock: Clock, *, metrics: WorkerMetrics | None = None,
                 rand: Callable[[], float] = random.random,
                 offload: Offload = asyncio.to_thread,
                 roots: RootRelease | None = None,
                 crashes: CrashMetrics | None = None) -> None:
        self._store = store
        self._targets = tuple(targets)
        self._queue = queue
        self._clock = clock
        self._offload = offload
        self._batches = BatchRunner(store, uploader, queue, clock, metrics=metrics, rand=rand,
                                    offload=offload, stopping=lambda: self._stopping,
                                    roots=roots)
        self._slots = asyncio.Semaphore(queue.workers)
        self._held = 0  # slots taken and not yet given back
        self._events = {t.name: asyncio.Event() for t in self._targets}
        self._loops: list[asyncio.Task[None]] = []
        self._uploads: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._crashes = crashes
        self._waiting_for_space: set[str] = set()  # targets whose claims the disk refused

    def notify(self, target: str | None = None) -> None:
        """New rows were committed: wake the target's loop (all loops when None)."""
        for name, event in self._events.items():
            if target is None or name == target:
                event.set()

    def free_slots(self) -> int:
        """Upload slots not held right now (queue.workers when idle)."""
        return self._queue.workers - self._held

    async def _take_slot(self) -> None:
        await self._slots.acquire()
        self._held += 1

    def _give_slot(self) -> None:
        self._held -= 1
        self._slots.release()

    def _full(self, target: Target, exc: QueueFull) -> None:
        """Say once per episode that the target waits for space (not once a second)."""
        if target.name not in self._waiting_for_space:
            self._waiting_for_space.add(target.name)
            log.warning("target %s: no new uploads until the queue's disk has space again: "
                        "%s", target.name, exc)

    def start(self) -> None:
        for target in self._targets:
            self._loops.append(supervise.start(
                f"worker-{target.name}", functools.partial(self._target_loop, target),
                self._crashes, sleep=self._clock.sleep))

    async def stop(self, grace: float) -> int:
        """Stop claiming; let running uploads finish for up to `grace` seconds, then cancel
        them (the uploader kills its `nix copy`). Every row not completed goes back to
        pending. Returns the number of rows released."""
        self._stopping = True
        self.notify()
        if self._uploads:
            log.info("waiting up to %.1f s for %d running upload(s)", grace, len(self._uploads))
            _, pending = await asyncio.wait(set(self._uploads), timeout=grace)
            if pending:
                log.warning("grace period over: cancelling %d upload(s)", len(pending))
        for task in [*self._uploads, *self._loops]:
            task.cancel()
        await asyncio.gather(*self._uploads, *self._loops, return_exceptions=True)
        # The daemon is the queue's only user, so once nothing runs every inflight row is one
        # whose upload did not finish: back to pending, never done.
        try:
            released: int = await self._offload(self._store.recover)
        except QueueError as exc:  # disk full: the next start recovers them (store.recover)
            log.warning("could not put unfinished rows back to pending (%s); the next start "
                        "does", exc)
            return 0
        if released:
            log.info("released %d unfinished row(s) back to pending", released)
        return released

    # -- claiming -------------------------------------------------------------------------

    async def _target_loop(self, target: Target) -> None:
        event = self._events[target.name]
        while not self._stopping:
            await self._take_slot()
            try:
                event.clear()
                jobs = [] if self._stopping else await self._claim(target)
            except asyncio.CancelledError:
                self._give_slot()
                raise
            except QueueFull as exc:
                # Nothing new starts until there is space; held outcomes (batch.py) retry.
                self._give_slot()
                self._full(target, exc)
                await self._clock.sleep(POLL_INTERVAL)
                continue
            except Exception:
                # E.g. the database is briefly unusable: keep the loop alive and try again.
                self._give_slot()
                log.exception("target %s: claiming from the queue failed", target.name)
                await self._clock.sleep(POLL_INTERVAL)
                continue
            if target.name in self._waiting_for_space:
                self._waiting_for_space.discard(target.name)
                log.info("target %s: the queue's disk has space again", target.name)
            if not jobs:
                self._give_slot()
                if not self._stopping:
                    await self._wait_for_work(event, await self._idle_time(target))
                continue
            for chunk in await self._spread(jobs):
                task = asyncio.create_task(self._run_batch(target, chunk))
                self._uploads.add(task)
                task.add_done_callback(self._uploads.discard)

    async def _spread(self, jobs: list[Job]) -> list[list[Job]]:
        """Split a batch over upload slots that are idle right now (one slot is held already).

        Nix 2.8 uploads a batch one path after another, so on a high-latency link parallel
        `nix copy` runs finish a short queue several times sooner (see docs/benchmarks.md);
        a full batch means a long queue, whose next claims keep the other slots busy."""
        if len(jobs) >= self._queue.batch_size:
            return [jobs]
        slots = 1
        while slots < len(jobs) and not self._slots.locked():
            await self._take_slot()  # returns at once: the semaphore is not locked
            slots += 1
        return split_even(jobs, slots)

    async def _claim(self, target: Target) -> list[Job]:
        size = self._queue.batch_size
        jobs = await self._claim_some(target, size)
        if jobs and len(jobs) < size and self._queue.batch_wait > 0:
            await self._clock.sleep(self._queue.batch_wait)
            try:
                jobs += await self._claim_some(target, size - len(jobs))
            except asyncio.CancelledError:
                raise
            except Exception:
                # The rows claimed first are inflight now: upload them rather than strand
                # them until a restart (the fault suite's full-disk test caught that).
                log.exception("target %s: claiming more for a batch failed; uploading the "
                              "%d already claimed", target.name, len(jobs))
        return jobs

    async def _claim_some(self, target: Target, limit: int) -> list[Job]:
        retry = self._queue.retry
        jobs: list[Job] = await self._offload(
            self._store.claim, target.name, limit, self._clock.now(),
            horizon=retry.max_delay * (1 + retry.jitter))
        return jobs

    async def _idle_time(self, target: Target) -> float:
        """Sleep until the next backoff expires, but look again at least every
        POLL_INTERVAL (and never spin: MIN_IDLE)."""
        try:
            due: float | None = await self._offload(self._store.next_due, target.name)
        except QueueError as exc:  # e.g. the database briefly locked: just look again soon
            log.warning("target %s: reading the next retry time failed: %s", target.name, exc)
            return POLL_INTERVAL
        if due is None:
            return POLL_INTERVAL
        return max(MIN_IDLE, min(POLL_INTERVAL, due - self._clock.now()))

    async def _wait_for_work(self, event: asyncio.Event, timeout: float) -> None:
        woken = asyncio.create_task(event.wait())
        timer = asyncio.create_task(self._clock.sleep(timeout))
        try:
            await asyncio.wait({woken, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            timer.cancel()

    async def _run_batch(self, target: Target, jobs: list[Job]) -> None:
        try:
            await self._batches.run(target, jobs)
        finally:
            self._give_slot()
