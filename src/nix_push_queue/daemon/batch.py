"""One claimed batch, run to its end: upload it, bisect it on failure, settle every row.

A failed batch is bisected so one bad path never holds up the rest: both halves are uploaded
right away, one after the other in the same upload slot (so the worker's bound holds
strictly); a half that fails again is split further. A permanent failure of a single path
dead-letters it at once. When both halves of a transiently failed batch fail transiently too,
the cause is most likely the target itself (network, cache down), so every row backs off
instead of splitting down to single paths, which would cost 2n-1 failing `nix copy` runs per
outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from ..config.model import Queue, Retry, Target
from ..errors import QueueFull
from .clock import Clock
from .store import Job, QueueStore
from .uploader import Uploader, UploadResult

log = logging.getLogger(__name__)

Offload = Callable[..., Awaitable[Any]]

# How often a refused release (disk full, database locked) is tried again.
RELEASE_RETRY = 1.0
# How often an outcome the full disk refused is tried again (the full-disk rule).
FULL_RETRY = 1.0


class WorkerMetrics(Protocol):
    """What the worker reports; metrics.DaemonMetrics implements it."""

    def upload_finished(self, target: str, kind: str, paths: int, seconds: float,
                        nbytes: int | None) -> None: ...

    def paths_settled(self, target: str, outcome: str, count: int) -> None: ...


class RootRelease(Protocol):
    """roots.RootKeeper: release the GC roots of paths the target now has."""

    def settled(self, paths: Sequence[str]) -> int: ...


def backoff_delay(policy: Retry, attempts: int, rand: float) -> float:
    """Seconds before the next try after `attempts` failed ones (attempts >= 1)."""
    base = min(policy.max_delay, policy.initial_delay * 2.0 ** max(0, attempts - 1))
    return float(base * (1 + policy.jitter * rand))


class BatchRunner:
    """Uploads claimed rows and records each row's outcome in the store."""

    def __init__(self, store: QueueStore, uploader: Uploader, queue: Queue, clock: Clock, *,
                 metrics: WorkerMetrics | None, rand: Callable[[], float], offload: Offload,
                 stopping: Callable[[], bool], roots: RootRelease | None = None) -> None:
        self._store = store
        self._roots = roots
        self._uploader = uploader
        self._queue = queue
        self._clock = clock
        self._metrics = metrics
        self._rand = rand
        self._offload = offload
        self._stopping = stopping

    async def run(self, target: Target, jobs: list[Job]) -> None:
        try:
            result, rest = await self._upload(target, jobs)
            if result.kind != "ok" and rest:
                await self._after_failure(target, rest, result)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug, not an upload failure. Leaving the rows inflight would strand them until
            # a restart, so put them back now.
            log.exception("target %s: unexpected error in a batch of %d", target.name, len(jobs))
            await self._release(target, jobs)

    async def _release(self, target: Target, jobs: Sequence[Job]) -> None:
        """Put rows back to pending, trying again while the database refuses (disk full,
        locked): rows left inflight would wait for a restart and `wait` would never return.
        On stop, `stop()` recovers whatever is still inflight."""
        failures = 0
        while True:
            try:
                await self._offload(self._store.release, [j.id for j in jobs])
                if failures:
                    log.info("target %s: released the batch of %d after %d failed tries",
                             target.name, len(jobs), failures)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if failures == 0:
                    log.error("target %s: releasing a batch of %d failed (%s); retrying",
                              target.name, len(jobs), exc)
                failures += 1
            if self._stopping():
                return
            await self._clock.sleep(RELEASE_RETRY)

    async def _upload(self, target: Target,
                      jobs: Sequence[Job]) -> tuple[UploadResult, list[Job]]:
        """One `nix copy`; settles gone, skipped and (on success) uploaded rows. Returns the
        result and the rows still unsettled (the failed ones)."""
        paths = [j.path for j in jobs]
        started = self._clock.now()
        try:
            derivations = await self._offload(self._store.derivations_of, paths)
            result = await self._uploader.upload(target, paths, derivations)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("target %s: uploader raised", target.name)
            result = UploadResult("transient", f"uploader error: {type(exc).__name__}")
        now = self._clock.now()
        gone, skipped = set(result.gone), set(result.skipped)
        rest = [j for j in jobs if j.path not in gone and j.path not in skipped]
        await self._settle_gone_skipped(target, jobs, gone, skipped, now)
        if result.kind != "ok":
            self._report(target, result.kind, len(paths), now - started, None)
            return result, rest
        sizes = self._sizes(rest, result.sizes)
        if rest:
            await self._record(target, self._complete, rest, now, sizes)
            self._count(target, "done", len(rest))
            log.info("target %s: uploaded %d path(s) in %.2f s", target.name, len(rest),
                     now - started)
        nbytes = sum(sizes.values()) if len(sizes) == len(rest) else None
        self._report(target, "ok", len(paths), now - started, nbytes)
        return result, []

    @staticmethod
    def _sizes(jobs: Sequence[Job], uploaded: Mapping[str, int]) -> dict[int, int]:
        """NAR sizes by row id, for metrics: recorded ones, else what the uploader saw."""
        return {j.id: size for j in jobs
                if (size := j.size if j.size is not None else uploaded.get(j.path)) is not None}

    def _report(self, target: Target, kind: str, paths: int, seconds: float,
                nbytes: int | None) -> None:
        if self._metrics is not None:
            self._metrics.upload_finished(target.name, kind, paths, seconds, nbytes)

    async def _settle_gone_skipped(self, target: Target, jobs: Sequence[Job], gone: set[str],
                                   skipped: set[str], now: float) -> None:
        gone_ids = [j.id for j in jobs if j.path in gone]
        if gone_ids:
            for path in sorted(gone):
                log.info("target %s: %s is no longer in the store (garbage-collected); "
                         "dropped from the queue", target.name, path)
            await self._record(target, self._store.forget, gone_ids, "garbage-collected")
            self._count(target, "gone", len(gone_ids))
        skipped_ids = [j.id for j in jobs if j.path in skipped and j.path not in gone]
        if skipped_ids:
            log.info("target %s: skipped %d path(s) served by an upstream cache",
                     target.name, len(skipped_ids))
            await self._record(target, self._skip,
                               [j for j in jobs if j.id in set(skipped_ids)], now)
            self._count(target, "skipped", len(skipped_ids))

    async def _record(self, target: Target, write: Callable[..., object], *args: Any) -> None:
        """Record an outcome. The full-disk rule: while the disk refuses (QueueFull) the
        outcome is held here and tried again every FULL_RETRY seconds; its rows stay
        inflight in the database, so `status` and `wait` see them as uploading, and they
        are settled as soon as a write fits. On stop, the rows go back to pending at the
        next start (an upload done twice costs a `nix copy` of paths the cache has)."""
        held = 0
        while True:
            try:
                await self._offload(write, *args)
            except QueueFull as exc:
                if held == 0:
                    log.warning("target %s: the queue's disk is full (%s); holding the "
                                "outcome until there is space", target.name, exc)
                held += 1
                if self._stopping():
                    raise
                await self._clock.sleep(FULL_RETRY)
                continue
            if held:
                log.info("target %s: space is back; recorded an outcome held %d s",
                         target.name, held * FULL_RETRY)
            return

    def _complete(self, jobs: Sequence[Job], now: float, sizes: Mapping[int, int]) -> None:
        self._store.complete([j.id for j in jobs], now, sizes=sizes or None)
        self._release_roots(jobs)

    def _skip(self, jobs: Sequence[Job], now: float) -> None:
        self._store.skip([j.id for j in jobs], "signed by an upstream key", now)
        self._release_roots(jobs)

    def _release_roots(self, jobs: Sequence[Job]) -> None:
        """In the same thread call as the commit, so a `wait` that sees the rows settled
        finds their roots gone too. A failure is the periodic pass's to repair."""
        if self._roots is None:
            return
        try:
            self._roots.settled([j.path for j in jobs])
        except Exception as exc:
            log.warning("could not release the GC roots of %d settled path(s) (%s); the "
                        "periodic pass releases them", len(jobs), exc)

    async def _after_failure(self, target: Target, jobs: list[Job],
                             result: UploadResult) -> None:
        # target_wide: the target refused its credentials; every half would fail alike.
        if len(jobs) == 1 or result.target_wide or self._stopping():
            await self._record_failure(target, jobs, result)
            return
        middle = len(jobs) // 2
        halves = (jobs[:middle], jobs[middle:])
        log.info("target %s: batch of %d failed (%s); splitting", target.name, len(jobs),
                 result.kind)
        outcomes = [await self._upload(target, half) for half in halves]
        failed = [(rest, res) for res, rest in outcomes if res.kind != "ok" and rest]
        outage = (result.kind == "transient" and len(failed) == 2
                  and all(res.kind == "transient" for _, res in failed))
        for rest, res in failed:
            if outage:
                await self._record_failure(target, rest, res)
            else:
                await self._after_failure(target, rest, res)

    async def _record_failure(self, target: Target, jobs: Sequence[Job],
                              result: UploadResult) -> None:
        """Count one failed attempt per row: back off, or dead-letter after max_attempts (or
        at once for a permanent failure, which no retry can fix)."""
        now = self._clock.now()
        policy = self._queue.retry
        by_attempts: dict[int, list[Job]] = {}
        for job in jobs:
            by_attempts.setdefault(job.attempts + 1, []).append(job)
        for attempts, group in sorted(by_attempts.items()):
            ids = [j.id for j in group]
            if result.kind == "permanent" or attempts >= policy.max_attempts:
                await self._record(target, self._store.fail, ids, result.message, now, None)
                self._count(target, "dead", len(ids))
                for job in group:
                    log.error("target %s: %s is a dead letter after %d attempt(s): %s",
                              target.name, job.path, attempts, result.message)
                continue
            delay = backoff_delay(policy, attempts, self._rand())
            await self._record(target, self._store.fail, ids, result.message, now,
                               now + delay)
            self._count(target, "retry", len(ids))
            log.warning("target %s: %d path(s) failed (attempt %d/%d, %s), retry in %.1f s: %s",
                        target.name, len(ids), attempts, policy.max_attempts, result.kind,
                        delay, result.message)

    def _count(self, target: Target, outcome: str, count: int) -> None:
        if self._metrics is not None:
            self._metrics.paths_settled(target.name, outcome, count)
