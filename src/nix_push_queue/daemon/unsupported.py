"""Targets this daemon's Nix cannot upload to: s3:// on a Nix built without S3 support.

Debian's Nix 2.8 and 2.26 are such builds (nix/stores.py). Their s3 targets are found once at
start, with one log line each. The hook still queues their paths (nothing is lost, and the
queue says what happened to each), but no `nix copy` is run for them: every row becomes a
dead letter at once, with the reason as its error, without spending attempts on retries that
cannot succeed. Dead letters are what `status`, `wait` and the metrics already report, so a CI
job's `wait` fails with the reason instead of hanging. Once the daemon runs with a Nix that has
S3 (`nix.nix_bin_dir`), `nix-push-queue retry --target NAME` uploads them.

A Nix with the S3 store but without AWS authentication (Debian's 2.34) still gets its
uploads; its start line warns that credentials are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from ..config.model import Target
from ..errors import QueueError
from ..nix import stores
from .store import QueueStore

log = logging.getLogger(__name__)

SWEEP_EVERY = 1.0  # seconds between looks for new rows of unsupported targets
SWEEP_BATCH = 500
_ADVICE = ("its paths become dead letters without an upload attempt; run the daemon with a "
           "Nix built with S3 support (nix.nix_bin_dir), then `nix-push-queue retry --target "
           "{name}`")


def check_targets(targets: Sequence[Target], nix_bin_dir: str | None,
                  env: Mapping[str, str]) -> dict[str, str]:
    """Target name -> why it cannot be served, for the s3 targets this Nix cannot open. Logs
    one line per s3 target that cannot be served, or is served without authentication."""
    s3 = [t for t in targets if stores.is_s3(t)]
    if not s3:
        return {}
    support = stores.s3_support(nix_bin_dir, env)
    log.debug("S3 support of %s: %s", support.nix, support)
    if support.supported:
        if support.signed is False:
            for target in s3:
                log.warning("target %s: %s", target.name, support.unsigned_reason())
        return {}
    reasons = {}
    for target in s3:
        reasons[target.name] = f"{support.reason()}; {_ADVICE.format(name=target.name)}"
        log.error("target %s (%s): %s", target.name, target.url, reasons[target.name])
    return reasons


def sweep(store: QueueStore, reasons: Mapping[str, str], now: float) -> dict[str, int]:
    """Dead-letter every due pending row of the unsupported targets; counts per target."""
    settled: dict[str, int] = {}
    for name, reason in reasons.items():
        while jobs := store.claim(name, SWEEP_BATCH, now):
            store.fail([j.id for j in jobs], reason, now, None)
            settled[name] = settled.get(name, 0) + len(jobs)
    return settled


async def sweep_loop(store: QueueStore, reasons: Mapping[str, str],
                     count: Callable[[str, int], None] | None = None) -> None:
    """Sweep about once a second until cancelled (a `retry` or a new build revives rows).
    `count(target, n)`: for the metrics' dead-letter counter."""
    while True:
        try:
            settled = await asyncio.to_thread(sweep, store, reasons, time.time())
        except QueueError as exc:  # e.g. the database is briefly locked: next sweep
            log.warning("dead-lettering paths of unsupported targets failed: %s", exc)
            settled = {}
        for name, n in settled.items():
            log.error("target %s: %d path(s) are dead letters: %s", name, n,
                      reasons[name].split(";")[0])
            if count is not None:
                count(name, n)
        await asyncio.sleep(SWEEP_EVERY)
