from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from nix_push_queue.daemon.store import SCHEMA_VERSION, QueueStore, TargetStats
from nix_push_queue.errors import QueueError


def sp(i: int, name: str = "p") -> str:
    return f"/nix/store/{i:032d}-{name}"


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(tmp_path / "queue.sqlite")


def test_pragmas_and_schema(store: QueueStore) -> None:
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.schema_version() == SCHEMA_VERSION
    conn.close()


def test_reopen_keeps_rows_and_refuses_newer_schema(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite"
    with QueueStore(db) as s:
        s.enqueue([sp(1)], ["a"], 1.0)
    with QueueStore(db) as s:
        assert s.jobs() == [(sp(1), "a", "pending", 0)]
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(QueueError, match="schema version 99"):
        QueueStore(db)


def test_unusable_database_is_a_queue_error(tmp_path: Path) -> None:
    bad = tmp_path / "junk.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(QueueError, match=str(bad)):
        QueueStore(bad)


def test_enqueue_is_idempotent_per_path_and_target(store: QueueStore) -> None:
    assert store.enqueue([sp(1), sp(2), sp(1)], ["a", "b"], 10.0) == 4
    assert store.enqueue([sp(1), sp(2)], ["a", "b"], 11.0) == 0
    assert store.enqueue([sp(3)], ["a"], 12.0, drv=sp(9, "x.drv")) == 1
    assert len(store.jobs()) == 5
    assert store.jobs("b") == [(sp(1), "b", "pending", 0), (sp(2), "b", "pending", 0)]


def test_claim_order_due_time_and_limit(store: QueueStore) -> None:
    store.enqueue([sp(1)], ["a"], 10.0)
    store.enqueue([sp(2)], ["a"], 5.0)
    store.enqueue([sp(3)], ["a"], 20.0)
    store.enqueue([sp(4)], ["b"], 1.0)
    assert store.claim("a", 10, 4.0) == []
    jobs = store.claim("a", 2, 15.0)
    assert [j.path for j in jobs] == [sp(2), sp(1)]
    assert all(j.target == "a" and j.attempts == 0 for j in jobs)
    assert store.claim("a", 10, 15.0) == []  # claimed rows are not claimed twice
    assert [j.path for j in store.claim("a", 10, 25.0)] == [sp(3)]
    assert store.next_due("a") is None and store.next_due("b") == 1.0


def test_fail_backoff_then_dead_letter(store: QueueStore) -> None:
    store.enqueue([sp(1), sp(2)], ["a"], 0.0)
    jobs = store.claim("a", 10, 1.0)
    store.fail([jobs[0].id], "network down", 2.0, retry_at=30.0)
    store.complete([jobs[1].id], 2.0)
    assert store.claim("a", 10, 29.0) == []
    assert store.next_due("a") == 30.0
    (again,) = store.claim("a", 10, 30.0)
    assert again.attempts == 1
    store.fail([again.id], "still down", 31.0, retry_at=None)
    stats = store.stats(40.0)["a"]
    assert (stats.pending, stats.inflight, stats.done, stats.dead) == (0, 0, 1, 1)
    assert (stats.last_error, stats.last_error_at) == ("still down", 31.0)
    assert store.jobs("a")[0] == (sp(1), "a", "dead", 2)


def test_new_build_revives_dead_letter_only(store: QueueStore) -> None:
    store.enqueue([sp(1), sp(2)], ["a"], 0.0)
    j1, j2 = store.claim("a", 10, 0.0)
    store.fail([j1.id], "bad", 1.0, None)
    store.complete([j2.id], 1.0)
    assert store.enqueue([sp(1), sp(2)], ["a"], 50.0) == 1
    assert store.jobs("a") == [(sp(1), "a", "pending", 0), (sp(2), "a", "done", 0)]
    assert store.stats(60.0)["a"].oldest_pending_age == 10.0


def test_retry_and_drop_dead(store: QueueStore) -> None:
    store.enqueue([sp(i) for i in range(4)], ["a", "b"], 0.0)
    for target in ("a", "b"):
        jobs = store.claim(target, 10, 0.0)
        store.fail([j.id for j in jobs], "bad", 1.0, None)
    assert store.retry_dead("a", [sp(0), sp(99)], now=2.0) == 1
    assert store.retry_dead(None, [sp(1)], now=2.0) == 2
    assert store.drop_dead("b", [sp(2)]) == 1
    assert store.retry_dead(None, [], now=2.0) == 0
    assert store.drop_dead(None, None) == 4  # a:2, a:3, b:0, b:3
    assert sorted(store.jobs()) == [(sp(0), "a", "pending", 0), (sp(1), "a", "pending", 0),
                                    (sp(1), "b", "pending", 0)]
    assert len(store.claim("a", 10, 2.0)) == 2  # retried rows are due at once


def test_skip_forget_release_recover(store: QueueStore) -> None:
    store.enqueue([sp(i) for i in range(4)], ["a"], 0.0)
    j0, j1, j2, _ = store.claim("a", 10, 0.0)
    store.skip([j0.id], "signed by cache.nixos.org-1", 1.0)
    store.forget([j1.id], "garbage-collected")
    store.release([j2.id])
    # j3 stays inflight: a crash now, then the daemon starts again
    assert store.recover() == 1
    assert store.jobs("a") == [(sp(0), "a", "skipped", 0), (sp(2), "a", "pending", 0),
                               (sp(3), "a", "pending", 0)]
    assert [j.attempts for j in store.claim("a", 10, 2.0)] == [0, 0]


def test_complete_records_sizes(store: QueueStore) -> None:
    store.enqueue([sp(1)], ["a"], 0.0)
    (job,) = store.claim("a", 1, 0.0)
    store.complete([job.id], 1.0, sizes={job.id: 1234})
    store.enqueue([sp(1)], ["b"], 0.0)
    assert store._conn.execute("SELECT size FROM jobs WHERE target = 'a'").fetchone()[0] == 1234


def test_stats(store: QueueStore) -> None:
    store.enqueue([sp(i) for i in range(5)], ["a"], 100.0)
    store.enqueue([sp(9)], ["a"], 90.0)
    jobs = store.claim("a", 2, 100.0)
    store.complete([jobs[0].id], 101.0)
    stats = store.stats(110.0, targets=["a", "idle"])
    assert stats["a"] == TargetStats(pending=4, inflight=1, done=1, dead=0, skipped=0,
                                     oldest_pending_age=10.0)
    assert stats["idle"] == TargetStats()


def test_recover_after_process_death(tmp_path: Path) -> None:
    """A claim by a process that then dies (no close, no release) is recovered on reopen."""
    db = tmp_path / "q.sqlite"
    QueueStore(db).enqueue([sp(1), sp(2)], ["a"], 0.0)
    proc = multiprocessing.get_context("spawn").Process(target=_claim_and_die, args=(db,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    store = QueueStore(db)
    assert [s for _, _, s, _ in store.jobs()] == ["inflight", "inflight"]
    assert store.recover() == 2
    assert len(store.claim("a", 10, 1.0)) == 2


def _claim_and_die(db: Path) -> None:
    import os

    QueueStore(db).claim("a", 10, 1.0)
    os._exit(9)


def _enqueue_in_process(db: str, paths: list[str]) -> None:
    store = QueueStore(Path(db))
    for path in paths:
        store.enqueue([path], ["a", "b"], time.time())
    store.close()


def test_concurrent_enqueues_from_threads_and_processes(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite"
    store = QueueStore(db)
    paths = [sp(i) for i in range(60)]
    # every writer enqueues an overlapping slice: each path is offered several times
    slices = [paths[i:i + 30] for i in range(0, 60, 10)]
    created: list[int] = []
    threads = [threading.Thread(target=lambda s=s: created.extend(
        store.enqueue([p], ["a", "b"], 0.0) for p in s)) for s in slices]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_enqueue_in_process, args=(str(db), list(reversed(s))))
             for s in slices]
    for proc in procs:
        proc.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    rows = store.jobs()
    assert sorted((p, t) for p, t, _, _ in rows) == sorted(
        (p, t) for p in paths for t in ("a", "b"))
    assert sum(created) <= 120


def test_100k_pending_rows_claim_and_stats_use_indexes(store: QueueStore) -> None:
    started = time.perf_counter()
    assert store.enqueue((sp(i) for i in range(100_000)), ["a"], 0.0) == 100_000
    enqueued = time.perf_counter()
    jobs = store.claim("a", 32, 1.0)
    stats = store.stats(10.0)
    done = time.perf_counter()
    print(f"100k enqueue {enqueued - started:.2f} s; claim + stats {done - enqueued:.3f} s")
    assert len(jobs) == 32 and stats["a"].pending == 100_000 - 32
    assert done - started < 60  # generous: a sanity bound, not a benchmark

    def plan(sql: str, *params: object) -> str:
        rows = store._conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return " | ".join(r[-1] for r in rows)

    claim = plan("SELECT id, path, target, attempts, drv, enqueued_at, size FROM jobs"
                 " WHERE target = ? AND state = 'pending' AND next_attempt_at <= ?"
                 " ORDER BY next_attempt_at, id LIMIT ?", "a", 1.0, 32)
    assert "USING INDEX jobs_claim" in claim and "TEMP B-TREE" not in claim
    counts = plan("SELECT target, state, count(*) FROM jobs GROUP BY target, state")
    assert "COVERING INDEX" in counts and "TEMP B-TREE" not in counts
    oldest = plan("SELECT min(enqueued_at) FROM jobs WHERE target = ? AND state = 'pending'",
                  "a")
    assert "COVERING INDEX jobs_age" in oldest
    due = plan("SELECT min(next_attempt_at) FROM jobs WHERE target = ? AND state = 'pending'",
               "a")
    assert "COVERING INDEX jobs_claim" in due
