"""The queue store's state guards, orphaned targets and read errors (issue 22), over a real
SQLite file in tmp."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.errors import QueueError


def sp(i: int, name: str = "p") -> str:
    return f"/nix/store/{i:032d}-{name}"


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(tmp_path / "queue.sqlite")


def test_complete_and_fail_move_only_inflight_rows(store: QueueStore) -> None:
    """A second daemon's recover() used to put a running upload's rows back to pending; the
    running upload then marked them done (or dead) by id whatever their state. Now a row
    moves only from inflight."""
    store.enqueue([sp(1), sp(2), sp(3)], ["a"], 1.0)
    jobs = store.claim("a", 10, 2.0)
    store.recover()  # someone else reset them
    store.complete([jobs[0].id], 3.0)
    store.fail([jobs[1].id], "boom", 3.0, None)
    store.skip([jobs[2].id], "upstream", 3.0)
    assert {s for _, _, s, _ in store.jobs()} == {"pending"}
    again = store.claim("a", 10, 4.0)
    store.complete([again[0].id], 5.0)
    store.fail([again[1].id], "boom", 5.0, None)
    store.complete([again[1].id], 6.0)  # a dead letter is not revived as done either
    assert [(s, n) for _, _, s, n in store.jobs()] == [("done", 0), ("dead", 1),
                                                       ("inflight", 0)]


def test_orphaned_targets_are_marked_hold_no_root_and_drop(store: QueueStore) -> None:
    store.enqueue([sp(1), sp(2)], ["a", "old"], 1.0)
    for job in store.claim("a", 10, 2.0):
        store.complete([job.id], 2.0)
    # Before configure, every target counts: path 1 is not on every target.
    assert store.uploaded([sp(1)]) == set()
    assert not store.stats(3.0, ["a"])["old"].orphaned
    store.configure(["a"])
    stats = store.stats(3.0, ["a"])
    assert stats["old"].orphaned and stats["old"].pending == 2
    assert not stats["a"].orphaned
    assert store.uploaded([sp(1), sp(2)]) == {sp(1), sp(2)}
    assert store.rooted_paths() == []
    assert store.drop_orphaned() == 2
    assert [t for _, t, _, _ in store.jobs()] == ["a", "a"]
    assert "old" not in store.stats(4.0, ["a"])


def test_read_errors_are_queue_errors(store: QueueStore) -> None:
    """A raw sqlite3 error ended the worker's loop (issue 22): reads raise QueueError."""
    store.enqueue([sp(1)], ["a"], 1.0)
    store._conn.execute("DROP TABLE jobs")
    for read in (lambda: store.next_due("a"), lambda: store.stats(1.0),
                 lambda: store.rooted_paths(), lambda: store.uploaded([sp(1)]),
                 lambda: store.jobs(), lambda: store.throughput(1.0, 60.0)):
        with pytest.raises(QueueError, match="no such table") as caught:
            read()
        assert isinstance(caught.value.__cause__, sqlite3.Error)
