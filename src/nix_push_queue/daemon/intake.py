"""Paths in, committed rows out: the one way into the queue, for socket requests, the spool
and the resolver (derivation installables, resolver.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ProtocolError
from ..nix import installable, storepath
from ..wire.protocol import EnqueueReply
from .filters import excluded
from .store import QueueStore

log = logging.getLogger(__name__)


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
    # Target name -> its transport and why (daemon/transport.Choice), for `status`.
    transports: Mapping[str, str] = field(default_factory=dict)
    # Target name -> bytes its staged files hold, and the cap (the boto3 S3 transport).
    staging: Callable[[str], int] | None = None
    staging_max: int | None = None
    # roots.RootKeeper.root: GC roots for the paths to queue, made before the commit (the hook
    # made them already for its own; `push` and spooled paths may have none).
    roots: Callable[[Sequence[str]], object] | None = None
    # cachecheck.CacheCheck.lacking: which paths a target lacks although its row says done.
    lacking: Callable[[str, Sequence[str]], list[str]] | None = None
    # Told when a build's outputs come in (a hook's request or spool entry): uploads then
    # leave builds their CPUs (nix/priority.CpuShare).
    build_seen: Callable[[], None] | None = None

    def enqueue(self, paths: Sequence[str], source: str, drv: str | None = None,
                force: bool = False) -> EnqueueReply:
        """Rows created, and rows not created (already queued, or excluded by filters):
        `queued + skipped == len(unique entries) * len(targets)`. An entry is a store path
        or a derivation installable (`DRV^*`), which waits for the resolver; `drv` (the
        hook's DRV_PATH) is resolved too, to name the outputs among `paths`. Raises
        ProtocolError (bad_path) naming the first bad entry; nothing is queued then."""
        unique = list(dict.fromkeys(paths))
        for path in unique:
            problem = installable.problem(path, self.store_dir)
            if problem is not None:
                raise ProtocolError(f"{path[:300]!r}: {problem}", "bad_path", "paths")
        if drv is not None and not storepath.is_derivation(drv, self.store_dir):
            problem = storepath.problem(drv, self.store_dir) or "not a .drv"
            raise ProtocolError(f"{drv[:300]!r}: {problem}", "bad_path", "drv")
        if self.build_seen is not None and source in ("hook", "spool"):
            self.build_seen()  # only for a request that names a build's outputs
        unique = list(dict.fromkeys(installable.normalize(p) for p in unique))
        derivations = [(entry, parts[0]) for entry in unique
                       if (parts := installable.split(entry)) is not None]
        plain = [p for p in unique if installable.split(p) is None]
        wanted = [p for p in plain if not excluded(p, self.exclude)]
        if drv is None and len(derivations) == 1 and derivations[0][0].endswith("^*"):
            # One build's outputs and its `DRV^*` (a hook's spool file or request): the
            # paths wait for the derivation to name them, so they leave with realisations.
            drv = derivations[0][1]
        elif drv is not None and wanted:
            derivations.append((installable.canonical(drv), drv))
        derivations = list(dict(derivations).items())
        if self.roots is not None and wanted:
            # Before the commit, as the hook does: no moment where a queued path has no root
            # (a root whose enqueue then fails is the periodic pass's to release).
            self.roots(wanted)
        queued = (self.store.enqueue(wanted, self.targets, self.now(), drv=drv,
                                     derivations=derivations)
                  if wanted or derivations else 0)
        if wanted:
            # Pushes and rebuilds alike (a hook's entry for a path built again): a done
            # row whose cache lost the path is uploaded again.
            queued += self._recheck(wanted, force)
        n_excluded = len(plain) - len(wanted)
        if self.metrics is not None:
            self.metrics.enqueue_handled(source, queued, n_excluded)
        return EnqueueReply(queued=queued,
                            skipped=max(0, len(unique) * len(self.targets) - queued))

    def _recheck(self, paths: Sequence[str], force: bool) -> int:
        """The queue answers from the cache, not from the row: a done row whose target lacks
        the path (one lookup each, cachecheck.py) is queued again; with `force` (`push
        --force`) every settled row is. Returns rows queued again."""
        settled = self.store.settled_rows(paths, self.targets, skipped=force)
        if not force and self.lacking is not None:
            settled = {t: self.lacking(t, done) for t, done in settled.items()}
        elif not force:
            return 0
        settled = {t: p for t, p in settled.items() if p}
        if not settled:
            return 0
        moved = self.store.requeue(settled, self.now())
        for target, lost in settled.items():
            log.info("target %s: %d path(s) queued again (%s): %s", target, len(lost),
                     "push --force" if force else "its row said done, the cache lacks them",
                     ", ".join(lost[:5]) + (" ..." if len(lost) > 5 else ""))
        if self.roots is not None:
            self.roots(sorted({p for lost in settled.values() for p in lost}))
        return moved

    def enqueue_resolved(self, entry: str, drv: str, outputs: Mapping[str, str]) -> int:
        """The resolver found `entry`'s outputs (name -> path): queue those the filters
        keep, with their derivation, and root them. Returns rows created."""
        kept = {name: path for name, path in outputs.items()
                if storepath.is_store_path(path, self.store_dir)
                and not excluded(path, self.exclude)}
        if self.roots is not None and kept:
            self.roots(list(kept.values()))  # before the commit, as `enqueue` does
        return self.store.resolved(entry, drv, kept, self.targets, self.now())
