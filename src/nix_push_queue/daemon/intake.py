"""Paths in, committed rows out: the one way into the queue, for socket requests and the spool."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ProtocolError
from ..nix import storepath
from ..wire.protocol import EnqueueReply
from .filters import excluded
from .store import QueueStore


class IntakeMetrics(Protocol):
    def enqueue_handled(self, source: str, queued: int, excluded: int) -> None: ...


@dataclass(frozen=True)
class Intake:
    """Validation, exclusion, enqueue for every target.

    Synchronous (it commits with fsync): the server calls it in a thread, spool ingestion
    calls it from its own thread.
    """

    store: QueueStore
    store_dir: str
    targets: tuple[str, ...]
    exclude: tuple[str, ...]
    now: Callable[[], float]
    metrics: IntakeMetrics | None = None
    # Target name -> why this daemon's Nix cannot upload to it (daemon/unsupported.py).
    unsupported: Mapping[str, str] = field(default_factory=dict)
    # roots.RootKeeper.root: GC roots for the queued paths (the hook made them already for
    # its own; `push` and spooled paths may have none).
    roots: Callable[[Sequence[str]], object] | None = None

    def enqueue(self, paths: Sequence[str], source: str, drv: str | None = None
                ) -> EnqueueReply:
        """Rows created, and rows not created (already queued, or excluded by filters):
        `queued + skipped == len(unique paths) * len(targets)`. Raises ProtocolError
        (bad_path) naming the first path that is not a store path; nothing is queued then."""
        unique = list(dict.fromkeys(paths))
        for path in [*unique, *([drv] if drv is not None else [])]:
            problem = storepath.problem(path, self.store_dir)
            if problem is not None:
                raise ProtocolError(f"{path[:300]!r}: {problem}", "bad_path", "paths")
        wanted = [p for p in unique if not excluded(p, self.exclude)]
        queued = self.store.enqueue(wanted, self.targets, self.now(), drv=drv) if wanted else 0
        if self.roots is not None and wanted:
            self.roots(wanted)
        n_excluded = len(unique) - len(wanted)
        if self.metrics is not None:
            self.metrics.enqueue_handled(source, queued, n_excluded)
        return EnqueueReply(queued=queued, skipped=len(unique) * len(self.targets) - queued)
