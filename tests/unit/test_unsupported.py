"""daemon/unsupported.py's sweep on a real queue database: rows of a target the daemon's Nix
cannot serve become dead letters at once, with the reason; other targets' rows are untouched."""

from __future__ import annotations

from pathlib import Path

from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.daemon.unsupported import sweep

REASON = "this Nix (nix (Nix) 2.26.3) was built without S3 support"
PATHS = [f"/nix/store/{c * 32}-p{i}" for i, c in enumerate("abcdefgh")]


def test_sweep_dead_letters_only_the_unsupported_target(tmp_path: Path) -> None:
    with QueueStore(tmp_path / "queue.sqlite") as store:
        store.enqueue(PATHS, ["local", "s3"], now=100.0)
        assert sweep(store, {"s3": REASON}, now=101.0) == {"s3": len(PATHS)}
        assert {(t, state, n) for _, t, state, n in store.jobs()} == {
            ("local", "pending", 0), ("s3", "dead", 1)}
        stats = store.stats(102.0, ["local", "s3"])
        assert stats["s3"].dead == len(PATHS) and stats["s3"].last_error == REASON
        assert stats["local"].pending == len(PATHS) and stats["local"].last_error is None
        # Nothing left to settle: a second sweep does nothing.
        assert sweep(store, {"s3": REASON}, now=103.0) == {}


def test_retried_and_rebuilt_rows_are_swept_again(tmp_path: Path) -> None:
    with QueueStore(tmp_path / "queue.sqlite") as store:
        store.enqueue(PATHS[:2], ["s3"], now=100.0)
        sweep(store, {"s3": REASON}, now=101.0)
        assert store.retry_dead("s3", None, now=102.0) == 2
        store.enqueue(PATHS[2:3], ["s3"], now=102.0)
        assert sweep(store, {"s3": REASON}, now=103.0) == {"s3": 3}
        assert [state for _, _, state, _ in store.jobs("s3")] == ["dead"] * 3


def test_sweep_takes_large_backlogs_in_batches(tmp_path: Path) -> None:
    many = [f"/nix/store/{i:032d}-p" for i in range(1234)]
    with QueueStore(tmp_path / "queue.sqlite") as store:
        store.enqueue(many, ["s3"], now=100.0)
        assert sweep(store, {"s3": REASON}, now=101.0) == {"s3": 1234}
        assert store.stats(102.0, ["s3"])["s3"].pending == 0
