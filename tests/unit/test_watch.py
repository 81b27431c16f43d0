"""daemon/watch.py (through QueueStore) and wire/progress.py: where asked-for paths stand,
priority over the backlog, bytes pending and the recent rate, the `progress` message codec,
and the upgrade of a version-2 queue."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nix_push_queue.daemon.store import SCHEMA_VERSION, QueueStore
from nix_push_queue.errors import ProtocolError
from nix_push_queue.wire import protocol
from nix_push_queue.wire.progress import (
    PathProblem,
    PathsProgress,
    ProgressReply,
    ProgressRequest,
    merge,
)


def sp(i: int, name: str = "p") -> str:
    return f"/nix/store/{i:032d}-{name}"


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(tmp_path / "queue.sqlite")


def never(path: str) -> bool:
    return False


def test_progress_counts_each_path_once_per_target(store: QueueStore) -> None:
    store.enqueue([sp(i) for i in range(6)], ["a", "b"], 1.0)
    store.enqueue([sp(50)], ["a"], 1.0)  # a backlog path nobody asks about
    store.set_sizes({sp(0): 100, sp(1): 200, sp(2): 300})
    jobs = {j.path: j for j in store.claim("a", 10, 2.0)}
    store.complete([jobs[sp(0)].id, jobs[sp(1)].id], 3.0)
    store.fail([jobs[sp(2)].id], "HTTP 500", 3.0, 10.0)
    store.fail([jobs[sp(3)].id], "bad key", 3.0, None)
    store.forget([jobs[sp(4)].id], "gone", 3.0)
    asked = [sp(i) for i in range(6)] + [sp(7, "excluded.drv"), sp(8), sp(0)]
    got = store.path_progress(asked, ["a", "b"], lambda p: p.endswith(".drv"))
    a = got["a"]
    assert (a.total, a.done, a.pending, a.inflight, a.dead, a.gone, a.excluded, a.missing) == (
        8, 2, 1, 1, 1, 1, 1, 1)
    assert (a.retries, a.bytes_done, a.bytes_total, a.unsized) == (1, 300, 600, 2)
    assert a.outstanding == 2 and a.settled == 3
    assert {(p.path, p.state) for p in a.problems} == {
        (sp(3), "dead"), (sp(4), "gone"), (sp(8), "missing")}
    assert next(p for p in a.problems if p.state == "dead").error == "bad key"
    b = got["b"]
    assert (b.pending, b.excluded, b.missing, b.done) == (6, 1, 1, 0)


def test_progress_ignores_rows_of_targets_no_longer_configured(store: QueueStore) -> None:
    store.enqueue([sp(1)], ["old", "a"], 1.0)
    assert set(store.path_progress([sp(1)], ["a"], never)) == {"a"}


def test_prioritized_rows_are_claimed_before_the_backlog(store: QueueStore) -> None:
    store.enqueue([sp(i) for i in range(100)], ["a"], 1.0)
    store.enqueue([sp(200), sp(201)], ["a"], 2.0)
    assert store.prioritize([sp(201), sp(200), sp(999)]) == 2
    assert store.prioritize([sp(200)]) == 0  # marked already
    first = store.claim("a", 3, 5.0)
    assert [j.path for j in first] == [sp(200), sp(201), sp(0)]
    assert [j.path for j in store.claim("a", 2, 5.0)] == [sp(1), sp(2)]


def test_prioritized_rows_still_wait_for_their_backoff(store: QueueStore) -> None:
    store.enqueue([sp(1), sp(2)], ["a"], 1.0)
    job = store.claim("a", 1, 1.0)[0]
    store.fail([job.id], "HTTP 503", 1.0, 100.0)
    store.prioritize([sp(1)])
    assert [j.path for j in store.claim("a", 5, 2.0)] == [sp(2)]
    assert [j.path for j in store.claim("a", 5, 100.0)] == [sp(1)]


def test_throughput_bytes_pending_and_recent_uploads(store: QueueStore) -> None:
    store.enqueue([sp(i) for i in range(4)], ["a"], 1.0)
    store.set_sizes({sp(0): 10, sp(1): 20, sp(2): 40})
    jobs = store.claim("a", 2, 1.0)
    store.complete([jobs[0].id], 100.0)
    store.complete([jobs[1].id], 150.0)
    # sp(2), sp(3) pending (one unsized); sp(1) done at 150, sp(0) at 100.
    assert store.throughput(161.0, 60.0) == {"a": (40, 1, 1, 20)}
    assert store.throughput(161.0, 100.0) == {"a": (40, 1, 2, 30)}


def test_a_version_2_queue_is_upgraded_in_place(tmp_path: Path) -> None:
    db = tmp_path / "q.sqlite"
    with QueueStore(db) as s:
        s.enqueue([sp(1)], ["a"], 1.0)
    conn = sqlite3.connect(db)
    conn.executescript("DROP TABLE job_derivations; ALTER TABLE jobs DROP COLUMN again;"
                       "DROP TABLE derivations; ALTER TABLE jobs DROP COLUMN output;"
                       "ALTER TABLE lost DROP COLUMN reason;"
                       "DROP INDEX jobs_priority; DROP INDEX jobs_recent;"
                       "ALTER TABLE jobs DROP COLUMN priority;"
                       "UPDATE schema_version SET version = 2;")
    conn.close()
    with QueueStore(db) as s:
        assert s.schema_version() == SCHEMA_VERSION == 5
        assert s.prioritize([sp(1)]) == 1
        assert [j.path for j in s.claim("a", 1, 2.0)] == [sp(1)]


def test_progress_messages_round_trip() -> None:
    request = ProgressRequest((sp(1), sp(2)), prioritize=True)
    assert protocol.decode_request(protocol.encode(request)) == request
    reply = ProgressReply({"a": PathsProgress(total=2, done=1, dead=1, bytes_done=5,
                                              problems=(PathProblem(sp(2), "dead", "x"),))},
                          spool_pending=3, spool_error=None)
    assert protocol.decode_reply(protocol.encode(reply), "progress") == reply


@pytest.mark.parametrize(("line", "field"), [
    (b'{"v":1,"op":"progress"}', "paths"),
    (b'{"v":1,"op":"progress","paths":[1]}', "paths"),
    (b'{"v":1,"op":"progress","paths":[],"prioritize":"yes"}', "prioritize"),
])
def test_bad_progress_requests(line: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        protocol.decode_request(line)
    assert exc.value.field == field


@pytest.mark.parametrize("line", [
    b'{"v":1,"ok":true,"targets":{"a":{"done":-1}}}',
    b'{"v":1,"ok":true,"targets":{"a":{"problems":[{"path":"x","state":"odd"}]}}}',
    b'{"v":1,"ok":true,"targets":[]}',
])
def test_bad_progress_replies(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        protocol.decode_reply(line, "progress")


def test_merge_adds_the_chunks_up() -> None:
    one = ProgressReply({"a": PathsProgress(total=2, done=2, bytes_done=7)}, 1)
    two = ProgressReply({"a": PathsProgress(total=1, dead=1,
                                            problems=(PathProblem(sp(3), "dead"),))}, 0)
    got = merge([one, two])
    assert got.targets["a"] == PathsProgress(total=3, done=2, dead=1, bytes_done=7,
                                             problems=(PathProblem(sp(3), "dead"),))
    assert got.spool_pending == 1
