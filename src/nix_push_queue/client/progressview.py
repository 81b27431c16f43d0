"""How a wait shows its progress: on a terminal a live line per target (drawn by rich);
anywhere else (a CI log) a plain line per target every few seconds; a summary at the end.

Rates and ETAs come from what the client saw over the last WINDOW seconds, by bytes where
the daemon has measured every size, else by paths. Imported only by the waiting commands,
never on the hook's path (rich is imported only when a terminal is there to draw on).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from ..wire.progress import PathsProgress
from ..wire.protocol import RATE_WINDOW, TargetStats

WINDOW = 30.0  # seconds of history a rate is measured over
EVERY = 5.0  # seconds between two plain lines


@dataclass(frozen=True)
class Snapshot:
    """One target at one poll. `bytes_total` is None while sizes are not all known;
    `bytes_left`/`daemon_rate` stand in when only the daemon's figures exist (`wait`)."""

    target: str
    done: int
    total: int
    failed: int
    retries: int | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    bytes_left: int | None = None
    daemon_rate: float | None = None
    # `failed` by kind, as the wait's final message counts them; () means all dead letters
    kinds: tuple[tuple[str, int], ...] = ()

    def failed_text(self) -> str:
        """`0 dead`, `2 dead`, `1 dead, 1 lost`, `1 not queued`: never a path that was
        never queued called dead."""
        named = [f"{n} {kind}" for kind, n in self.kinds if n]
        return ", ".join(named) if named else f"{self.failed} dead"


def from_paths(name: str, p: PathsProgress) -> Snapshot:
    return Snapshot(name, p.settled, p.total, p.dead + p.gone + p.missing, p.retries,
                    p.bytes_done, p.bytes_total if p.unsized == 0 else None,
                    kinds=(("dead", p.dead), ("lost", p.gone), ("not queued", p.missing)))


class QueueTracker:
    """Whole-queue snapshots (`wait`): progress counted from the first poll on."""

    def __init__(self) -> None:
        self._base: dict[str, TargetStats] = {}

    def snapshots(self, stats: Mapping[str, TargetStats]) -> list[Snapshot]:
        out = []
        for name, s in sorted(stats.items()):
            base = self._base.setdefault(name, s)
            done = max(0, s.done + s.skipped - base.done - base.skipped)
            dead, gone = max(0, s.dead - base.dead), max(0, s.gone - base.gone)
            left = s.bytes_pending if s.unsized_pending == 0 else None
            out.append(Snapshot(name, done, done + dead + gone + s.pending + s.inflight,
                                dead + gone, bytes_left=left,
                                daemon_rate=s.recent_bytes / RATE_WINDOW,
                                kinds=(("dead", dead), ("lost", gone))))
        return out


class Meter:
    """Rates of one target over the last WINDOW seconds of snapshots."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seen: deque[tuple[float, Snapshot]] = deque()
        self.first: tuple[float, Snapshot] | None = None

    def add(self, snap: Snapshot) -> None:
        now = self._clock()
        self._seen.append((now, snap))
        self.first = self.first or (now, snap)
        while len(self._seen) > 2 and now - self._seen[1][0] >= WINDOW:
            self._seen.popleft()

    def _delta(self, field: str) -> float | None:
        (t0, a), (t1, b) = self._seen[0], self._seen[-1]
        start: int | None = getattr(a, field)
        end: int | None = getattr(b, field)
        if t1 - t0 < 1.0 or start is None or end is None:
            return None
        return max(0.0, (end - start) / (t1 - t0))

    def rates(self) -> tuple[float | None, float | None]:
        """(paths per second, bytes per second)."""
        if not self._seen:
            return None, None
        last = self._seen[-1][1]
        nbytes = self._delta("bytes_done") if last.bytes_done is not None else last.daemon_rate
        return self._delta("done"), nbytes

    def eta(self) -> float | None:
        if not self._seen:
            return None
        snap = self._seen[-1][1]
        paths_rate, bytes_rate = self.rates()
        left_bytes = (snap.bytes_total - (snap.bytes_done or 0)
                      if snap.bytes_total is not None else snap.bytes_left)
        if left_bytes is not None and bytes_rate:
            return left_bytes / bytes_rate
        left = snap.total - snap.done - snap.failed
        return left / paths_rate if paths_rate else None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_seconds(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def describe(snap: Snapshot, meter: Meter) -> str:
    """`312/1000 paths, 41.2 MiB/131.9 MiB, 62.4 paths/s, 8.2 MiB/s, ETA 11s, 0 retries, 0 dead`"""
    parts = [f"{snap.done}/{snap.total} paths"]
    if snap.bytes_done is not None:
        total = human_bytes(snap.bytes_total) if snap.bytes_total is not None else "?"
        parts.append(f"{human_bytes(snap.bytes_done)}/{total}")
    elif snap.bytes_left is not None:
        parts.append(f"{human_bytes(snap.bytes_left)} left")
    paths_rate, bytes_rate = meter.rates()
    if paths_rate is not None:
        parts.append(f"{paths_rate:.1f} paths/s")
    if bytes_rate is not None:
        parts.append(f"{human_bytes(bytes_rate)}/s")
    eta = meter.eta()
    if eta is not None and snap.done + snap.failed < snap.total:
        parts.append(f"ETA {human_seconds(eta)}")
    if snap.retries is not None:
        parts.append(f"{snap.retries} retries")
    parts.append(snap.failed_text())
    return ", ".join(parts)


def summary(snap: Snapshot, meter: Meter, elapsed: float) -> str:
    """`local: 1000/1000 paths, 131.9 MiB in 16s (8.2 MiB/s), 0 retries, 0 dead`"""
    first = meter.first[1] if meter.first else snap
    text = f"{snap.target}: {snap.done}/{snap.total} paths"
    if snap.bytes_done is not None:
        moved = snap.bytes_done - (first.bytes_done or 0)
        text += f", {human_bytes(snap.bytes_done)}"
        text += f" in {human_seconds(elapsed)} ({human_bytes(moved / max(elapsed, 0.001))}/s)"
    else:
        text += f" in {human_seconds(elapsed)}"
    if snap.retries is not None:
        text += f", {snap.retries} retries"
    return text + f", {snap.failed_text()}"


class View(Protocol):
    def update(self, snaps: Sequence[Snapshot]) -> None: ...
    def close(self) -> None: ...


class _Base:
    def __init__(self, stream: TextIO, label: str, clock: Callable[[], float]) -> None:
        self.stream = stream
        self.label = label
        self.clock = clock
        self.started = clock()
        self.meters: dict[str, Meter] = {}
        self.last: list[Snapshot] = []

    def _record(self, snaps: Iterable[Snapshot]) -> None:
        self.last = list(snaps)
        for snap in self.last:
            self.meters.setdefault(snap.target, Meter(self.clock)).add(snap)

    def _summary_lines(self) -> list[str]:
        elapsed = self.clock() - self.started
        return [f"{self.label}: {summary(s, self.meters[s.target], elapsed)}"
                for s in self.last]


class PlainView(_Base):
    """A line per target every EVERY seconds (and at the first poll), a summary at close."""

    def __init__(self, stream: TextIO, label: str, *, every: float = EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(stream, label, clock)
        self.every = every
        self._printed: float | None = None

    def update(self, snaps: Sequence[Snapshot]) -> None:
        self._record(snaps)
        now = self.clock()
        if self._printed is not None and now - self._printed < self.every:
            return
        self._printed = now
        stamp = human_seconds(now - self.started)
        for snap in self.last:
            self.stream.write(f"{self.label}: [{stamp}] {snap.target}: "
                              f"{describe(snap, self.meters[snap.target])}\n")
        self.stream.flush()

    def close(self) -> None:
        for line in self._summary_lines():
            self.stream.write(line + "\n")
        self.stream.flush()


class LiveView(_Base):
    """A rich progress bar per target, redrawn in place; the summary stays after it."""

    def __init__(self, stream: TextIO, label: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(stream, label, clock)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn
        from rich.table import Column

        self.console = Console(file=stream)
        # The target's name and the figures are what matter: the bar gives way first.
        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=16),
            TextColumn("{task.fields[text]}", table_column=Column(ratio=1)),
            console=self.console, transient=True, expand=True)
        self.tasks: dict[str, Any] = {}
        self.progress.start()

    def update(self, snaps: Sequence[Snapshot]) -> None:
        self._record(snaps)
        for snap in self.last:
            text = describe(snap, self.meters[snap.target])
            if snap.target not in self.tasks:
                self.tasks[snap.target] = self.progress.add_task(snap.target, text=text)
            self.progress.update(self.tasks[snap.target], completed=snap.done + snap.failed,
                                 total=max(snap.total, 1), text=text)

    def close(self) -> None:
        self.progress.stop()
        for line in self._summary_lines():
            self.console.print(line, highlight=False, markup=False)


def open_view(stream: TextIO, label: str, env: Mapping[str, str]) -> View:
    """LiveView on a terminal, else PlainView (also where rich is not installed: a
    package built without it still waits, with plain lines)."""
    if stream.isatty() and env.get("TERM", "") not in ("", "dumb"):
        try:
            return LiveView(stream, label)
        except ImportError:
            pass
    return PlainView(stream, label)
