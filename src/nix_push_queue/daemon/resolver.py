"""The resolver: derivation installables waiting in the queue (derivations.py) -> their
output paths, by name, from the installed Nix.

`nix build --json --no-link --max-jobs 0 --option substitute false DRV^*` (dialect.py spells
it for Nix 2.8) names the outputs of a derivation that is built, floating content-addressed
ones included, and fails rather than build or substitute anything. Measured: when
post-build-hook runs, Nix 2.8, 2.26 and 2.34 have already registered the build's outputs and
realisations, so a hook's `DRV^*` resolves at once.

A failure that no retry can fix (the .drv is not in the store, an output is not, Nix prints
what we cannot read) ends the derivation at once: it is recorded as lost with Nix's words.
Anything else (a timeout, a locked database) is retried with the queue's backoff policy and
lost after `max_attempts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence

from ..config.model import Retry
from ..errors import NpqError
from ..nix import built, dialect, installable, runner
from .batch import backoff_delay
from .derivations import PendingDerivation
from .intake import Intake
from .nixerrors import redact, summarize

log = logging.getLogger(__name__)

BATCH = 64  # derivations per `nix build --json`
TIMEOUT = 300.0  # seconds one `nix build --json` may take (a loaded machine)
IDLE = 60.0  # seconds between two looks when nothing is due and no one woke us

# Nix's words when the outputs are not in the store, or the .drv is not (recorded from 2.8,
# 2.26 and 2.34; the .drv collected: 2.26 "cannot build missing derivation", 2.34 "failed to
# obtain derivation of", 2.8 "getting status of ...: No such file or directory").
_FINAL = ("unable to start any build", "local builds are disabled", "is not valid",
          "does not exist", "no such file or directory", "is not a valid store path",
          "don't know how to build", "cannot build missing derivation",
          "failed to obtain derivation of")


def is_final(stderr: str) -> bool:
    """Whether Nix's whole stderr says no retry can help. The whole of it: an auto-GC
    (`min-free`) run by the same command prints lines that push the reason out of the
    summary."""
    text = stderr.lower()
    return any(marker in text for marker in _FINAL)


class Resolver:
    def __init__(self, intake: Intake, retry: Retry, env: Mapping[str, str],
                 nix_bin_dir: str | None, *, notify: Callable[[], None],
                 linger: Callable[[], float] = lambda: 0.0,
                 rand: Callable[[], float] = random.random) -> None:
        self._intake = intake
        self._store = intake.store
        self._retry = retry
        self._env = dict(env)
        self._bin = nix_bin_dir
        self._notify = notify
        self._rand = rand
        self._linger = linger  # seconds to let more derivations come once woken
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Something may wait to be resolved (called from the event loop)."""
        self._wake.set()

    async def loop(self) -> None:
        while True:
            try:
                await self.resolve_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("resolving derivations failed; trying again later")
            await self._sleep()
            wait = self._linger()
            if wait > 0:
                # Builds run: the next builds' derivations join this one's `nix build --json`
                # (and then one `nix copy`) rather than each start its own beside them.
                await asyncio.sleep(wait)

    async def _sleep(self) -> None:
        # Cleared before the look, not after: a derivation committed (and notify() called)
        # while the look runs in its thread then still wakes us. Cleared after, that wake-up
        # was lost and the derivation waited IDLE seconds (seen in CI under load).
        self._wake.clear()
        due = await asyncio.to_thread(self._store.next_derivation_due)
        delay = IDLE if due is None else min(IDLE, max(0.0, due - time.time()))
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def resolve_due(self) -> int:
        """Resolve every due derivation; returns how many were settled (queued or lost)."""
        settled = 0
        while True:
            due = await asyncio.to_thread(self._store.due_derivations, time.time(), BATCH)
            if not due:
                return settled
            nix = await dialect.detect_async(self._bin, self._env)
            outcome = await self._ask(nix, due)
            for item in due:
                result = outcome.get(item.installable)
                if isinstance(result, dict):
                    await self._queue(item, result)
                else:
                    await self._failed(item, result or "no outputs reported")
                settled += 1

    async def _ask(self, nix: dialect.Dialect, due: Sequence[PendingDerivation]
                   ) -> dict[str, dict[str, str] | str]:
        """installable -> outputs, or why not. All at once; one by one if that fails (one
        unbuilt derivation fails the whole command)."""
        together = await self._query(nix, due)
        if isinstance(together, dict) or len(due) == 1:
            return {d.installable: self._pick(d, together) for d in due}
        return {d.installable: self._pick(d, await self._query(nix, [d])) for d in due}

    async def _query(self, nix: dialect.Dialect, due: Sequence[PendingDerivation]
                     ) -> dict[str, dict[str, str]] | str:
        args = []
        for d in due:
            spec = installable.split(d.installable)
            names = installable.output_names(spec[1]) if spec else None
            args.append(nix.installable(d.drv, names))
        result = await runner.run(nix.outputs_json(list(dict.fromkeys(args))), env=self._env,
                                  timeout=TIMEOUT)
        if not result.ok:
            reason = "timed out" if result.timed_out else f"exited {result.returncode}"
            final = "final: " if not result.timed_out and is_final(result.stderr) else ""
            return f"{final}nix build --json {reason}: {summarize(result.stderr)}"
        try:
            return built.parse_built(result.stdout)
        except built.BuiltError as exc:
            return f"final: {exc}"

    @staticmethod
    def _pick(d: PendingDerivation, answer: dict[str, dict[str, str]] | str
              ) -> dict[str, str] | str:
        if isinstance(answer, str):
            return answer
        outputs = answer.get(d.drv)
        if not outputs:
            return f"final: Nix reported no outputs for {d.drv}"
        spec = installable.split(d.installable)
        names = installable.output_names(spec[1]) if spec else None
        if names is None:
            return dict(outputs)
        missing = [n for n in names if n not in outputs]
        if missing:
            return f"final: {d.drv} has no output {', '.join(missing)}"
        return {n: outputs[n] for n in names}

    async def _queue(self, item: PendingDerivation, outputs: dict[str, str]) -> None:
        try:
            queued = await asyncio.to_thread(self._intake.enqueue_resolved, item.installable,
                                             item.drv, outputs)
        except NpqError as exc:
            log.error("%s: cannot queue its outputs (will retry): %s", item.installable, exc)
            return
        log.info("%s: %d output(s) queued: %s", item.installable, len(outputs),
                 " ".join(f"{n}={p}" for n, p in sorted(outputs.items())))
        if queued:
            self._notify()

    async def _failed(self, item: PendingDerivation, why: str) -> None:
        # Only what _query or _pick marked: a timeout's summary may hold Nix's words for a
        # final failure from before it hung, and a timeout is retried.
        final = why.startswith("final: ")
        why = redact(why.removeprefix("final: "))
        attempts = item.attempts + 1
        if final or attempts >= self._retry.max_attempts:
            error = (f"{item.installable}: outputs not resolved (nothing uploaded as this "
                     f"derivation, no realisations): {why}")
            lost = await asyncio.to_thread(self._store.resolution_failed, item.installable,
                                           error, time.time(), None, self._intake.targets)
            if lost:
                log.error("%s (after %d attempt(s)); recorded as lost", error, attempts)
            else:
                log.warning("%s (after %d attempt(s)); its output paths go without their "
                            "realisations", error, attempts)
                self._notify()
            return
        delay = backoff_delay(self._retry, attempts, self._rand())
        log.warning("%s: outputs not resolved (attempt %d/%d), retry in %.1f s: %s",
                    item.installable, attempts, self._retry.max_attempts, delay, why)
        await asyncio.to_thread(self._store.resolution_failed, item.installable, why,
                                time.time(), time.time() + delay, self._intake.targets)
