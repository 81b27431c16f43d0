"""Which `nix build --json` failures the resolver gives up on at once: Nix's stderr recorded
from the real 2.8, 2.26 and 2.34 binaries when the .drv has been garbage-collected."""

from __future__ import annotations

import pytest

from nix_push_queue.daemon.resolver import is_final

DRV = "/nix/store/00000000000000000000000000000000-x.drv"
# An auto-GC (min-free) run by the same command prints before the error.
GC = "deleting garbage...\ndeleting unused links...\nnote: currently hard linking saves -0.00 MiB\n"

RECORDED = {
    "2.8": f"error: getting status of '{DRV}!out': No such file or directory\n",
    "2.26": f"don't know how to build these paths:\n  {DRV}\n"
            f"error: cannot build missing derivation '{DRV}'\n",
    "2.34": f"don't know how to build these paths:\n  {DRV}\n"
            f"error: failed to obtain derivation of '{DRV}'\n",
}


@pytest.mark.parametrize("version", sorted(RECORDED))
def test_a_collected_derivation_is_final(version: str) -> None:
    assert is_final(RECORDED[version])
    last_line = RECORDED[version].strip().splitlines()[-1]
    assert is_final(GC + last_line)


@pytest.mark.parametrize("stderr", [
    "error: opening lock file '/nix/var/nix/db/big-lock': Resource temporarily unavailable\n",
    "error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': Connection refused",
    "",
])
def test_a_passing_trouble_is_retried(stderr: str) -> None:
    assert not is_final(stderr)


class RecordingStore:
    def __init__(self) -> None:
        self.failed: list[tuple[str, float | None]] = []

    def resolution_failed(self, installable: str, error: str, now: float,
                          next_attempt: float | None, targets: tuple[str, ...]) -> bool:
        self.failed.append((error, next_attempt))
        return next_attempt is None


class StoreIntake:
    def __init__(self, store: RecordingStore) -> None:
        self.store = store
        self.targets = ("a",)


@pytest.mark.parametrize(("why", "retried"), [
    # A timeout whose last lines name a collected .drv: the hang is what failed; retried.
    (f"nix build --json timed out: {RECORDED['2.34'].strip()}", True),
    ("final: nix build --json exited 1: error: cannot build missing derivation", False),
])
def test_only_a_failure_marked_final_ends_the_derivation(why: str, retried: bool) -> None:
    import asyncio

    from nix_push_queue.config.model import Retry
    from nix_push_queue.daemon.derivations import PendingDerivation
    from nix_push_queue.daemon.resolver import Resolver

    store = RecordingStore()
    retry = Retry(max_attempts=5, initial_delay=1.0, max_delay=10.0, jitter=0.0)
    resolver = Resolver(StoreIntake(store), retry, {}, None,  # type: ignore[arg-type]
                        notify=lambda: None)
    asyncio.run(resolver._failed(PendingDerivation(f"{DRV}^*", DRV, 0, 0.0), why))
    [(_, next_attempt)] = store.failed
    assert (next_attempt is not None) == retried
