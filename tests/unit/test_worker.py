"""The worker with a fake uploader and fake time, over a real QueueStore in tmp.

Store calls run directly on the loop (no thread) so every test is deterministic: time moves
only when FakeClock.advance is called.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.config.model import GcRoots, Queue, Retry, Target
from nix_push_queue.daemon.clock import FakeClock
from nix_push_queue.daemon.derived import Derivations
from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.daemon.uploader import UploadResult
from nix_push_queue.daemon.worker import Worker, backoff_delay, split_even

T0 = 1_000_000.0


def sp(i: int, name: str = "p") -> str:
    return f"/nix/store/{i:032d}-{name}"


def target(name: str = "t") -> Target:
    return Target(name=name, url=f"file:///cache/{name}", secret_key_file=None,
                  public_key=None, ssh_key_file=None, credentials_file=None,
                  compression=None, compression_level=None,
                  parallel_compression=False, options=(), substitute=False, priority=None,
                  transport="auto", environment_file=None)


def queue(**kw: Any) -> Queue:
    retry = Retry(max_attempts=kw.pop("max_attempts", 5), initial_delay=5.0, max_delay=60.0,
                  jitter=kw.pop("jitter", 0.0))
    base = Queue(socket="/run/x.sock", socket_mode=0o660, socket_group=None, state_dir="/x",
                 spool_dir="/x/spool", workers=1, reserved_cpus=0, batch_size=32, batch_wait=0.2,
                 build_batch_wait=1.0,
                 upload_timeout=3600.0, stop_grace=30.0, retry=retry,
                 gc_roots=GcRoots(enable=False, max_bytes=None, max_age=None),
                 staging_max_bytes=1 << 31)
    return replace(base, **kw)


@dataclass
class Call:
    at: float
    target: str
    paths: tuple[str, ...]


@dataclass
class FakeUploader:
    clock: FakeClock
    decide: Callable[[Sequence[str]], UploadResult] = lambda paths: UploadResult("ok", "ok")
    duration: float = 0.0
    calls: list[Call] = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    cancelled: int = 0
    derivations: list[dict[str, Sequence[tuple[str, str]]]] = field(default_factory=list)

    async def upload(self, target: Target, paths: Sequence[str],
                     derivations: Derivations | None = None) -> UploadResult:
        self.derivations.append(dict(derivations or {}))
        self.calls.append(Call(self.clock.now(), target.name, tuple(paths)))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.duration:
                await self.clock.sleep(self.duration)
            return self.decide(paths)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


async def direct(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(tmp_path / "q.sqlite")


def make_worker(store: QueueStore, uploader: FakeUploader, clock: FakeClock,
                targets: Sequence[Target] = (target(),), **queue_kw: Any) -> Worker:
    return Worker(store, uploader, targets, queue(**queue_kw), clock, rand=lambda: 0.5,
                  offload=direct)


def states(store: QueueStore) -> dict[str, tuple[str, int]]:
    return {path: (state, attempts) for path, _, state, attempts in store.jobs()}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_backoff_delay_formula() -> None:
    policy = Retry(max_attempts=10, initial_delay=5.0, max_delay=60.0, jitter=0.2)
    assert [backoff_delay(policy, n, 0.0) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert backoff_delay(policy, 2, 1.0) == pytest.approx(12.0)
    assert backoff_delay(policy, 9, 0.5) == pytest.approx(66.0)


def test_uploads_a_batch_after_batch_wait(store: QueueStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock)
        worker = make_worker(store, up, clock)
        store.enqueue([sp(1)], ["t"], clock.now())
        worker.start()
        await clock.advance(0.1)
        store.enqueue([sp(2), sp(3)], ["t"], clock.now())  # arrives within batch_wait
        await clock.advance(1.0)
        assert [c.paths for c in up.calls] == [(sp(1), sp(2), sp(3))]
        assert up.calls[0].at == pytest.approx(T0 + 0.2)
        assert set(states(store).values()) == {("done", 0)}
        await worker.stop(grace=1)

    run(main())


def test_backoff_schedule_then_dead_letter(store: QueueStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock, lambda paths: UploadResult("transient", "cache down"))
        worker = make_worker(store, up, clock, max_attempts=5, jitter=0.1, batch_wait=0.0)
        store.enqueue([sp(1)], ["t"], clock.now())
        worker.start()
        await clock.advance(500)
        times = [c.at - T0 for c in up.calls]
        # delays 5, 10, 20, 40 (capped at 60) times (1 + 0.1 * 0.5)
        expected = [0.0]
        for delay in (5, 10, 20, 40):
            expected.append(expected[-1] + delay * 1.05)
        assert times == pytest.approx(expected)
        assert states(store) == {sp(1): ("dead", 5)}
        assert store.stats(clock.now())["t"].last_error == "cache down"
        await worker.stop(grace=1)

    run(main())


def test_bisect_isolates_a_permanently_bad_path(store: QueueStore) -> None:
    bad = sp(5)

    def decide(paths: Sequence[str]) -> UploadResult:
        return UploadResult("permanent" if bad in paths else "ok", "bad path")

    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock, decide)
        worker = make_worker(store, up, clock, batch_wait=0.0)
        store.enqueue([sp(i) for i in range(8)], ["t"], clock.now())
        worker.start()
        await clock.advance(1)
        # 8 fail -> 4+4 -> 2+2 -> 1+1: one call per level and side
        assert len(up.calls) == 1 + 2 + 2 + 2
        got = states(store)
        assert got.pop(bad) == ("dead", 1)
        assert set(got.values()) == {("done", 0)}
        await worker.stop(grace=1)

    run(main())


def test_bisect_transient_bad_path_others_done(store: QueueStore) -> None:
    bad = sp(2)

    def decide(paths: Sequence[str]) -> UploadResult:
        return UploadResult("transient" if bad in paths else "ok", "timeout")

    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock, decide)
        worker = make_worker(store, up, clock, batch_wait=0.0)
        store.enqueue([sp(i) for i in range(16)], ["t"], clock.now())
        worker.start()
        await clock.advance(1)
        got = states(store)
        assert got.pop(bad) == ("pending", 1)
        assert set(got.values()) == {("done", 0)}
        await worker.stop(grace=1)

    run(main())


def test_outage_backs_off_every_row_without_splitting_to_singles(store: QueueStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock, lambda paths: UploadResult("transient", "connection refused"))
        worker = make_worker(store, up, clock, batch_wait=0.0)
        store.enqueue([sp(i) for i in range(32)], ["t"], clock.now())
        worker.start()
        await clock.advance(1)
        assert [len(c.paths) for c in up.calls] == [32, 16, 16]
        assert set(states(store).values()) == {("pending", 1)}
        # the cache comes back: the next try after the backoff uploads everything
        up.decide = lambda paths: UploadResult("ok", "ok")
        await clock.advance(10)
        assert set(states(store).values()) == {("done", 1)}
        await worker.stop(grace=1)

    run(main())


def test_concurrency_is_bounded_over_all_targets(store: QueueStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock, duration=10.0)
        targets = (target("a"), target("b"), target("c"))
        worker = make_worker(store, up, clock, targets, workers=2, batch_size=1,
                             batch_wait=0.0)
        store.enqueue([sp(i) for i in range(6)], ["a", "b", "c"], clock.now())
        worker.start()
        await clock.advance(200)
        assert up.max_running == 2
        assert len(up.calls) == 18
        assert {c.target for c in up.calls} == {"a", "b", "c"}
        assert set(states(store).values()) == {("done", 0)}
        await worker.stop(grace=1)

    run(main())


def test_a_short_queue_is_spread_over_idle_slots(store: QueueStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock, duration=10.0)
        worker = make_worker(store, up, clock, workers=3, batch_wait=0.0)
        store.enqueue([sp(i) for i in range(5)], ["t"], clock.now())
        worker.start()
        await clock.advance(1)
        # three uploads at once instead of one batch of five behind two idle slots
        assert sorted(len(c.paths) for c in up.calls) == [1, 2, 2]
        assert up.max_running == 3
        await clock.advance(20)
        assert set(states(store).values()) == {("done", 0)}
        await worker.stop(grace=1)

    run(main())


def test_split_even_makes_exactly_as_many_chunks_as_slots() -> None:
    # Each chunk returns one slot: chunks == slots taken, for every size (issue 22).
    for n in range(1, 40):
        for parts in range(1, n + 1):
            chunks = split_even(list(range(n)), parts)
            assert len(chunks) == parts
            assert all(chunks)
            assert [j for c in chunks for j in c] == list(range(n))
            assert max(map(len, chunks)) - min(map(len, chunks)) <= 1


def test_upload_slots_are_all_returned_after_short_queues(store: QueueStore) -> None:
    """workers 8 under pushes of 9, 6, 4 and 256 paths: each burst runs as many uploads at
    once as it can use, up to 8, and every slot comes back (main leaked 3 on the first)."""
    async def main() -> list[int]:
        clock = FakeClock(T0)
        up = FakeUploader(clock, duration=10.0)
        worker = make_worker(store, up, clock, workers=8, batch_wait=0.0)
        worker.start()
        peaks = []
        for burst, n in enumerate((9, 6, 4, 256)):
            up.max_running = 0
            store.enqueue([sp(i, f"b{burst}") for i in range(n)], ["t"], clock.now())
            worker.notify()
            await clock.advance(200)
            peaks.append(up.max_running)
            assert worker.free_slots() == 8
        assert set(states(store).values()) == {("done", 0)}
        await worker.stop(grace=1)
        return peaks

    assert run(main()) == [8, 6, 4, 8]


def test_a_long_queue_keeps_full_batches(store: QueueStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock, duration=10.0)
        worker = make_worker(store, up, clock, workers=2, batch_size=4, batch_wait=0.0)
        store.enqueue([sp(i) for i in range(16)], ["t"], clock.now())
        worker.start()
        await clock.advance(100)
        assert [len(c.paths) for c in up.calls] == [4, 4, 4, 4]
        assert set(states(store).values()) == {("done", 0)}
        await worker.stop(grace=1)

    run(main())


def test_gone_paths_are_forgotten_and_skipped_ones_skipped(store: QueueStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock, lambda paths: UploadResult("ok", "ok", gone=(sp(1),),
                                                            skipped=(sp(2),)))
        worker = make_worker(store, up, clock, batch_wait=0.0)
        store.enqueue([sp(1), sp(2), sp(3)], ["t"], clock.now())
        worker.start()
        await clock.advance(1)
        assert states(store) == {sp(2): ("skipped", 0), sp(3): ("done", 0)}
        await worker.stop(grace=1)

    run(main())


def test_stop_cancels_after_grace_and_releases_rows(store: QueueStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock, duration=1000.0)
        worker = make_worker(store, up, clock, batch_wait=0.0)
        store.enqueue([sp(1), sp(2)], ["t"], clock.now())
        worker.start()
        await clock.advance(1)
        assert states(store) == {sp(1): ("inflight", 0), sp(2): ("inflight", 0)}
        released = await worker.stop(grace=0.05)  # real seconds; fake time stands still
        assert released == 2
        assert up.cancelled == 1
        assert states(store) == {sp(1): ("pending", 0), sp(2): ("pending", 0)}

    run(main())


def test_stop_lets_a_running_upload_finish_within_grace(store: QueueStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        gate = asyncio.Event()

        async def slow_ok(target: Target, paths: Sequence[str],
                          derivations: Derivations | None = None) -> UploadResult:
            await gate.wait()
            return UploadResult("ok", "ok")

        up = FakeUploader(clock)
        up.upload = slow_ok  # type: ignore[method-assign]
        worker = make_worker(store, up, clock, batch_wait=0.0)
        store.enqueue([sp(1)], ["t"], clock.now())
        worker.start()
        await clock.advance(1)
        stopping = asyncio.create_task(worker.stop(grace=30))
        await clock.settle()
        gate.set()
        assert await stopping == 0
        assert states(store) == {sp(1): ("done", 0)}

    run(main())


def test_enqueue_wakes_an_idle_loop_at_once(store: QueueStore) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock)
        worker = make_worker(store, up, clock, batch_wait=0.0)
        worker.start()
        await clock.advance(0.5)
        store.enqueue([sp(1)], ["t"], clock.now())
        worker.notify("t")
        await clock.settle()
        assert [c.at for c in up.calls] == [T0 + 0.5]
        await worker.stop(grace=1)

    run(main())


def test_next_attempt_at_matches_the_policy(store: QueueStore, tmp_path: Path) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        up = FakeUploader(clock, lambda paths: UploadResult("transient", "x"))
        worker = make_worker(store, up, clock, batch_wait=0.0, jitter=0.2)
        store.enqueue([sp(1)], ["t"], clock.now())
        worker.start()
        await clock.advance(1)
        await worker.stop(grace=1)

    run(main())
    conn = sqlite3.connect(store.path)
    (due,) = conn.execute("SELECT next_attempt_at FROM jobs").fetchone()
    assert due == pytest.approx(T0 + 5 * (1 + 0.2 * 0.5))


@dataclass
class RecordingMetrics:
    uploads: list[tuple[str, str, int, int | None]] = field(default_factory=list)
    settled: dict[str, int] = field(default_factory=dict)

    def upload_finished(self, target: str, kind: str, paths: int, seconds: float,
                        nbytes: int | None) -> None:
        self.uploads.append((target, kind, paths, nbytes))

    def paths_settled(self, target: str, outcome: str, count: int) -> None:
        self.settled[outcome] = self.settled.get(outcome, 0) + count


def test_metrics_and_sizes_are_reported(store: QueueStore) -> None:
    bad = sp(3)

    def result(paths: Sequence[str]) -> UploadResult:
        if bad in paths:
            return UploadResult("permanent", "x")
        return UploadResult("ok", "x", sizes={p: 100 for p in paths})

    async def main() -> RecordingMetrics:
        clock = FakeClock(T0)
        up = FakeUploader(clock, result)
        metrics = RecordingMetrics()
        worker = Worker(store, up, (target(),), queue(batch_wait=0.0), clock,
                        metrics=metrics, rand=lambda: 0.5, offload=direct)
        store.enqueue([sp(1), sp(2), bad, sp(4)], ["t"], clock.now())
        worker.start()
        await clock.advance(1)
        await worker.stop(grace=1)
        return metrics

    metrics = run(main())
    # 4 fail -> [1,2] ok + [3,4] fail -> [3] fail + [4] ok
    assert metrics.uploads == [("t", "permanent", 4, None), ("t", "ok", 2, 200),
                               ("t", "permanent", 2, None), ("t", "permanent", 1, None),
                               ("t", "ok", 1, 100)]
    assert metrics.settled == {"done": 3, "dead": 1}


class SteppedClock:
    """Wall time that can step back (an NTP correction, a wrong RTC at boot) while sleeps,
    like asyncio's, run on a monotonic clock."""

    def __init__(self, inner: FakeClock) -> None:
        self.inner = inner
        self.offset = 0.0

    def now(self) -> float:
        return self.inner.now() - self.offset

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def test_a_wall_clock_step_back_does_not_delay_retries(store: QueueStore) -> None:
    """Confirmed on main (issue 22): next_attempt_at is wall-clock time, so after a step back
    of an hour a 5 s backoff waited an hour. Now a row due later than the longest backoff
    (max_delay 60 s, jitter 0) is due at once."""
    async def main() -> None:
        fake = FakeClock(T0)
        clock = SteppedClock(fake)
        failing = [True]
        up = FakeUploader(fake, decide=lambda paths: UploadResult(
            "transient" if failing.pop(0) else "ok", "x"))
        worker = Worker(store, up, (target(),), queue(batch_wait=0.0), clock,
                        rand=lambda: 0.0, offload=direct)
        store.enqueue([sp(1)], ["t"], clock.now())
        worker.start()
        await fake.advance(1)
        assert states(store) == {sp(1): ("pending", 1)}  # retry due in 5 s
        clock.offset = 3600.0  # the wall clock steps back an hour
        failing.append(False)
        await fake.advance(70)
        assert states(store) == {sp(1): ("done", 1)}
        await worker.stop(grace=1)

    run(main())
