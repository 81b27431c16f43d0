"""client/progressview.py with a hand-driven clock: rates, ETA, plain lines every EVERY
seconds, the summary, whole-queue snapshots, and that choosing a view needs no rich off a
terminal."""

from __future__ import annotations

import io
import sys

from nix_push_queue.client.progressview import (
    Meter,
    PlainView,
    QueueTracker,
    Snapshot,
    describe,
    human_bytes,
    human_seconds,
    open_view,
    summary,
)
from nix_push_queue.wire.progress import PathsProgress
from nix_push_queue.wire.protocol import TargetStats


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def snap(done: int, nbytes: int | None = None, total: int = 100, failed: int = 0,
         bytes_total: int | None = 1000) -> Snapshot:
    return Snapshot("c", done, total, failed, 1, nbytes, bytes_total if nbytes is not None
                    else None)


def test_rates_and_eta_by_bytes_when_sizes_are_known() -> None:
    clock = Clock()
    meter = Meter(clock)
    meter.add(snap(0, 0))
    clock.now += 10
    meter.add(snap(20, 200))
    assert meter.rates() == (2.0, 20.0)
    assert meter.eta() == 40.0  # 800 bytes left at 20 B/s
    assert describe(snap(20, 200), meter) == (
        "20/100 paths, 200 B/1000 B, 2.0 paths/s, 20 B/s, ETA 40s, 1 retries, 0 dead")


def test_eta_by_paths_when_sizes_are_unknown_and_no_rate_at_first() -> None:
    clock = Clock()
    meter = Meter(clock)
    meter.add(Snapshot("c", 10, 100, 0))
    assert meter.rates() == (None, None) and meter.eta() is None
    clock.now += 30
    meter.add(Snapshot("c", 40, 100, 0))
    assert meter.eta() == 60.0  # 60 paths left at 1 path/s


def test_rate_forgets_what_is_older_than_the_window() -> None:
    clock = Clock()
    meter = Meter(clock)
    meter.add(Snapshot("c", 0, 1000, 0))
    for _ in range(10):  # fast at first ...
        clock.now += 5
        meter.add(Snapshot("c", meter._seen[-1][1].done + 50, 1000, 0))
    for _ in range(10):  # ... then slow
        clock.now += 5
        meter.add(Snapshot("c", meter._seen[-1][1].done + 5, 1000, 0))
    paths_rate, _ = meter.rates()
    assert paths_rate is not None and paths_rate < 2.0


def test_plain_view_prints_every_few_seconds_then_a_summary() -> None:
    clock = Clock()
    out = io.StringIO()
    view = PlainView(out, "push", every=5.0, clock=clock)
    for step in range(12):
        view.update([snap(step * 10, step * 100)])
        clock.now += 1
    view.close()
    lines = out.getvalue().splitlines()
    assert [line.split("]")[0] for line in lines[:-1]] == ["push: [0s", "push: [5s",
                                                           "push: [10s"]
    assert lines[-1] == ("push: c: 110/100 paths, 1.1 KiB in 12s (92 B/s), 1 retries, "
                         "0 dead")


def test_whole_queue_snapshots_count_from_the_first_poll() -> None:
    tracker = QueueTracker()
    first = tracker.snapshots({"c": TargetStats(pending=10, done=500, dead=1,
                                                bytes_pending=4096, recent_bytes=600)})
    assert first == [Snapshot("c", 0, 10, 0, bytes_left=4096, daemon_rate=10.0,
                              kinds=(("dead", 0), ("lost", 0)))]
    later = tracker.snapshots({"c": TargetStats(pending=2, inflight=1, done=506, dead=2,
                                                bytes_pending=100, unsized_pending=1)})
    assert later == [Snapshot("c", 6, 10, 1, bytes_left=None, daemon_rate=0.0,
                              kinds=(("dead", 1), ("lost", 0)))]


def test_paths_progress_becomes_a_snapshot() -> None:
    from nix_push_queue.client.progressview import from_paths

    p = PathsProgress(total=5, done=2, skipped=1, excluded=1, dead=1, retries=3,
                      bytes_done=10, bytes_total=30, unsized=0)
    assert from_paths("c", p) == Snapshot("c", 4, 5, 1, 3, 10, 30, kinds=(
        ("dead", 1), ("lost", 0), ("not queued", 0)))
    assert from_paths("c", PathsProgress(total=1, unsized=1)).bytes_total is None


def test_a_path_never_queued_is_not_called_dead() -> None:
    """issue 19: `wait --paths` of a never-queued path said `1 dead` in its progress."""
    from nix_push_queue.client.progressview import from_paths

    snap = from_paths("c", PathsProgress(total=1, missing=1))
    meter = Meter(lambda: 0.0)
    meter.add(snap)
    assert describe(snap, meter).endswith(", 1 not queued")
    assert summary(snap, meter, 1.0).endswith(", 1 not queued")
    both = from_paths("c", PathsProgress(total=3, dead=1, gone=2))
    assert both.failed_text() == "1 dead, 2 lost"
    assert from_paths("c", PathsProgress(total=3, done=3)).failed_text() == "0 dead"


def test_units() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 5 * 1024**3)] == [
        "0 B", "1023 B", "1.0 KiB", "5.0 GiB"]
    assert [human_seconds(s) for s in (0.4, 59, 61, 3725)] == ["0s", "59s", "1m01s", "1h02m"]


def test_off_a_terminal_no_rich_is_imported() -> None:
    sys.modules.pop("rich", None)
    view = open_view(io.StringIO(), "wait", {"TERM": "xterm"})
    assert isinstance(view, PlainView)
    assert "rich" not in sys.modules
