"""Targets this daemon cannot upload to: s3:// with `transport: nix` on a Nix built without
S3 support, or with the boto3 transport where boto3 is not installed.

Debian's Nix 2.8 and 2.26 are such builds (nix/stores.py); `transport: auto` (the default)
takes the boto3 transport there (daemon/s3/), so only `transport: nix` targets land here.
They are found once at start, with one log line each. The hook still queues their paths
(nothing is lost, and the queue says what happened to each), but no `nix copy` is run for
them: every row becomes a
dead letter at once, with the reason as its error, without spending attempts on retries that
cannot succeed. Dead letters are what `status`, `wait` and the metrics already report, so a CI
job's `wait` fails with the reason instead of hanging. Once the daemon runs with a Nix that has
S3 (`nix.nix_bin_dir`), `nix-push-queue retry --target NAME` uploads them.

A `transport: nix` target on a Nix with the S3 store but without AWS authentication (Debian's
2.34) still gets its uploads; its start line warns that credentials are ignored.
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
from .transport import Choice, boto3_missing

log = logging.getLogger(__name__)

SWEEP_EVERY = 1.0  # seconds between looks for new rows of unsupported targets
SWEEP_BATCH = 500
_ADVICE = ("its paths become dead letters without an upload attempt; use `transport: boto3` "
           "(or auto), or run the daemon with a Nix built with S3 support (nix.nix_bin_dir), "
           "then `nix-push-queue retry --target {name}`")


def check_targets(targets: Sequence[Target], support: stores.S3Support | None,
                  choices: Mapping[str, Choice]) -> dict[str, str]:
    """Target name -> why it cannot be served: an s3 target on `nix copy` whose Nix cannot
    open s3:// stores, or on boto3 where boto3 is not installed. Logs one line per s3
    target: its transport and why, or why it cannot be served."""
    reasons = {}
    for target in targets:
        choice = choices.get(target.name)
        if choice is None or not stores.is_s3(target):
            continue
        reason = None
        if choice.name == "boto3":
            reason = boto3_missing()
        elif support is not None and not support.supported:
            reason = f"{support.reason()}; {_ADVICE.format(name=target.name)}"
        if reason is None:
            log.info("target %s: transport %s", target.name, choice)
            if choice.name == "nix" and support is not None and support.signed is False:
                log.warning("target %s: %s", target.name, support.unsigned_reason())
            continue
        reasons[target.name] = reason
        log.error("target %s (%s): %s", target.name, target.url, reason)
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
