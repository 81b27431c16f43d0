"""Keeps the GC roots directory in step with the queue (docs/gc-roots.md).

The hook roots a path before Nix goes on (wire/gcroots.py); from then on this module owns the
root. Every `tick`:

1. measures the NAR size of newly queued paths (one `nix path-info` for up to SIZE_BATCH);
2. applies the cap (`queue.gc_roots.max_bytes` / `max_age`): the oldest roots past it are
   released, each one logged and counted; the path stays queued;
3. removes roots no open row wants: at once for paths every target has (done or skipped);
   for others (lost, dropped, excluded at enqueue, unknown) only once older than `grace`
   and while the spool is empty, because a root the hook just made may belong to a path
   whose enqueue is not committed yet.

The pass also makes the roots the queue wants and lacks, and the directory itself, when
someone removed them while the daemon runs (a cleanup, a reinstall without a restart, a fresh
Nix without `gcroots/`).

Besides the pass: intake roots what it queues, before the commit (`root`: `push` and spooled
paths may have no root; the directory is made again if it is missing), and a batch releases
the roots of what it uploaded right after the commit (`settled`), so `wait` returning means
they are gone. Everything else (drop, lost paths, a crash between commit and release) is left
to the pass: releasing a root late costs nothing, releasing one early loses a build.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..config.model import Config
from ..nix import dialect, pathinfo, runner
from ..wire import gcroots, spool
from .ledger import RootedPath
from .store import QueueStore

log = logging.getLogger(__name__)

Offload = Callable[..., Awaitable[Any]]
Reason = Literal["bytes", "age"]
SIZE_BATCH = 500  # paths per `nix path-info`
SIZE_TIMEOUT = 120.0
# A root the queue does not know is kept this long (plus hook.timeout): the hook makes it
# before its enqueue is committed.
GRACE = 120.0
EVERY = 2.0  # seconds between passes


class RootMetrics(Protocol):
    def roots_released(self, reason: str, count: int) -> None: ...

    def roots_held(self, count: int, nbytes: int) -> None: ...


@dataclass(frozen=True)
class RootPolicy:
    directory: str
    store_dir: str
    max_bytes: int | None
    max_age: float | None
    grace: float  # seconds a root unknown to the queue is left alone
    spool_dir: str


def over_cap(rooted: Sequence[RootedPath], now: float, max_bytes: int | None,
             max_age: float | None) -> list[tuple[RootedPath, Reason]]:
    """The roots to release, oldest first: every one older than `max_age`, then the oldest
    until the rest hold at most `max_bytes` (an unmeasured path counts 0)."""
    total = sum(r.size or 0 for r in rooted)
    out: list[tuple[RootedPath, Reason]] = []
    for root in rooted:
        if max_age is not None and now - root.since > max_age:
            out.append((root, "age"))
        elif max_bytes is not None and total > max_bytes:
            out.append((root, "bytes"))
        else:
            break
        total -= root.size or 0
    return out


class NarSizer:
    """NAR sizes from one `nix path-info --json` per batch; a path not in the store is 0."""

    def __init__(self, nix_bin_dir: str | None, env: Mapping[str, str]) -> None:
        self._bin = nix_bin_dir
        self._env = dict(env)

    async def __call__(self, paths: Sequence[str]) -> dict[str, int]:
        found = await dialect.detect_async(self._bin, self._env)
        result = await runner.run(found.path_info_json(paths), env=self._env,
                                  timeout=SIZE_TIMEOUT)
        if not result.ok:
            raise OSError(f"nix path-info exited {result.returncode}: "
                          f"{result.stderr.strip()[-300:]}")
        sizes = {i.path: i.nar_size or 0 for i in pathinfo.parse_path_infos(result.stdout)}
        return {p: sizes.get(p, 0) for p in paths}


class RootKeeper:
    def __init__(self, store: QueueStore, policy: RootPolicy, *,
                 sizer: Callable[[Sequence[str]], Awaitable[dict[str, int]]],
                 metrics: RootMetrics | None = None, now: Callable[[], float] = time.time,
                 offload: Offload = asyncio.to_thread) -> None:
        self._store = store
        self._policy = policy
        self._sizer = sizer
        self._metrics = metrics
        self._now = now
        self._offload = offload
        self._failing: str | None = None  # the last problem logged, to log each one once

    def prepare(self) -> None:
        """At start: create the directory if it is missing and this user may; say loudly
        when roots cannot be released here (they would pile up)."""
        directory = self._policy.directory
        try:
            gcroots.ensure_dir(directory)
        except OSError as exc:
            log.error("cannot create the GC roots directory %s: %s; queued paths are not "
                      "protected from garbage collection (docs/gc-roots.md)", directory,
                      exc.strerror)
            return
        if not os.access(directory, os.W_OK | os.X_OK):
            log.error("cannot write to the GC roots directory %s: roots of uploaded paths "
                      "cannot be released; give this user write access (docs/gc-roots.md)",
                      directory)

    async def tick(self) -> None:
        """One pass (see the module docstring). Problems are logged once, then retried."""
        measured = True
        try:
            await self._measure()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # unmeasured paths count 0 until the next pass
            self._problem(f"measuring NAR sizes: {type(exc).__name__}: {exc}")
            measured = False
        try:
            rooted: list[RootedPath] = await self._offload(self._store.rooted_paths)
            released = await self._apply_cap(rooted)
            wanted = {os.path.basename(r.path): r.path for r in rooted
                      if r.path not in released}
            await self._offload(self._sync, wanted)
            if self._metrics is not None:
                kept = [r for r in rooted if r.path not in released]
                self._metrics.roots_held(len(kept), sum(r.size or 0 for r in kept))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._problem(f"{type(exc).__name__}: {exc}")
        else:
            if measured:  # a problem still there is not logged again at every pass
                self._failing = None

    def root(self, paths: Sequence[str]) -> None:
        """Root newly queued paths still in the store (intake calls it before the commit: a
        `push` or a spooled path may have no root; for the hook's it refreshes the link).
        The directory is made again if it went missing. Paths every target has already (a
        `push` of uploaded outputs) get none: nothing would release it before the next
        pass, and a `push --wait` returns at once."""
        uploaded = self._store.uploaded(paths)
        wanted = [p for p in paths if p not in uploaded and os.path.lexists(p)]
        rooted, problem = gcroots.root_all(self._policy.directory, wanted)
        if problem is not None:
            self._problem(f"cannot root {len(wanted) - rooted} queued path(s): {problem}")

    def settled(self, paths: Sequence[str]) -> int:
        """Release the roots of those of `paths` every target has now (called right after
        an upload or skip is committed); returns roots removed."""
        removed = 0
        for path in self._store.uploaded(paths):
            removed += gcroots.remove_root(self._policy.directory, os.path.basename(path))
        return removed

    async def _measure(self) -> None:
        rooted: list[RootedPath] = await self._offload(self._store.rooted_paths)
        unsized = [r.path for r in rooted if r.size is None][:SIZE_BATCH]
        if unsized:
            sizes = await self._sizer(unsized)
            await self._offload(self._store.set_sizes, sizes)

    async def _apply_cap(self, rooted: list[RootedPath]) -> set[str]:
        p = self._policy
        now = self._now()
        over = over_cap(rooted, now, p.max_bytes, p.max_age)
        if not over:
            return set()
        await self._offload(self._store.release_roots, [r.path for r, _ in over], now)
        total = sum(r.size or 0 for r in rooted)
        for root, reason in over:
            await self._offload(gcroots.remove_root, p.directory, os.path.basename(root.path))
            limit = (f"gc_roots.max_age {p.max_age:g} s" if reason == "age"
                     else f"gc_roots.max_bytes {p.max_bytes} (roots held {total} bytes)")
            log.warning("GC root of %s released (queued %.0f s ago, %s bytes): past %s; it "
                        "stays queued, but a garbage collection may now delete it",
                        root.path, now - root.since, root.size, limit)
            total -= root.size or 0
            if self._metrics is not None:
                self._metrics.roots_released(reason, 1)
        return {r.path for r, _ in over}

    def _sync(self, wanted: Mapping[str, str]) -> None:
        """Make the roots the queue wants and lacks (the directory or a link removed by
        someone else while the path is still here), release the roots nothing wants (see
        grace), and remove temporary links a killed process left."""
        p = self._policy
        gcroots.ensure_dir(p.directory)
        present = gcroots.list_roots(p.directory)
        missing = [path for name, path in wanted.items()
                   if name not in present and os.path.lexists(path)]
        if missing:
            rooted, problem = gcroots.root_all(p.directory, missing)
            if rooted:
                log.warning("made %d missing GC root(s) of queued paths again in %s",
                            rooted, p.directory)
            if problem is not None:
                raise OSError(f"cannot root {len(missing) - rooted} queued path(s): {problem}")
        gcroots.stale_temps(p.directory, self._now() - p.grace)
        unwanted = [name for name in present if name not in wanted]
        # Uploaded everywhere: no enqueue of the path can change that, release at once.
        done = {os.path.basename(path) for path in self._store.uploaded(
            [f"{p.store_dir}/{name}" for name in unwanted])}
        # Otherwise the hook may have just made it, for an enqueue not committed yet.
        stale = [name for name in unwanted if name not in done
                 and self._now() - present[name][1] > p.grace]
        if stale and spool.spool_files(p.spool_dir):
            stale = []
        for name in [*done, *stale]:
            gcroots.remove_root(p.directory, name)
        if done or stale:
            log.debug("released %d GC root(s) of uploaded paths, %d no queued path needs",
                      len(done), len(stale))

    def _problem(self, message: str) -> None:
        if message != self._failing:
            log.error("GC roots in %s: %s (retrying)", self._policy.directory, message)
        self._failing = message

    async def loop(self, every: float) -> None:
        """`prepare`, then `tick` every `every` seconds until cancelled."""
        await self._offload(self.prepare)
        while True:
            await self.tick()
            await asyncio.sleep(every)


def keeper_for(config: Config, store: QueueStore, env: Mapping[str, str],
               metrics: RootMetrics | None) -> RootKeeper | None:
    """The daemon's keeper; None when `queue.gc_roots.enable` is off."""
    roots = config.queue.gc_roots
    if not roots.enable:
        return None
    state = env.get("NIX_STATE_DIR")
    if state and state.rstrip("/") != config.nix.state_dir:
        log.warning("NIX_STATE_DIR is %s but nix.state_dir is %s: GC roots go to the latter, "
                    "which this Nix's collector does not read", state, config.nix.state_dir)
    policy = RootPolicy(directory=config.nix.gc_roots_dir, store_dir=config.nix.store_dir,
                        max_bytes=roots.max_bytes, max_age=roots.max_age,
                        grace=GRACE + config.hook.timeout, spool_dir=config.queue.spool_dir)
    return RootKeeper(store, policy, sizer=NarSizer(config.nix.nix_bin_dir, env),
                      metrics=metrics)
