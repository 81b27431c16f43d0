"""The resolver's sleep loses no wake-up: a derivation committed while it looks for the next
due one (the look runs in a thread) wakes it at once, not after IDLE seconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nix_push_queue.config.model import Retry
from nix_push_queue.daemon import resolver as resolver_module
from nix_push_queue.daemon.resolver import Resolver


class LookingStore:
    """next_derivation_due finds nothing, but a hook's entry is committed meanwhile and the
    intake calls notify() on the event loop, as the spool loop does."""

    def __init__(self) -> None:
        self.resolver: Resolver | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def next_derivation_due(self) -> float | None:
        assert self.resolver is not None and self.loop is not None
        self.loop.call_soon_threadsafe(self.resolver.notify)
        time.sleep(0.05)  # the notify lands while the look is still running
        return None


class FakeIntake:
    def __init__(self, store: LookingStore) -> None:
        self.store = store


def test_a_wake_up_during_the_look_is_not_lost(monkeypatch: Any) -> None:
    monkeypatch.setattr(resolver_module, "IDLE", 30.0)
    store = LookingStore()
    retry = Retry(max_attempts=3, initial_delay=1.0, max_delay=10.0, jitter=0.0)
    res = Resolver(FakeIntake(store), retry, {}, None, notify=lambda: None)  # type: ignore[arg-type]
    store.resolver = res

    async def main() -> float:
        store.loop = asyncio.get_running_loop()
        started = time.monotonic()
        await asyncio.wait_for(res._sleep(), 10)
        return time.monotonic() - started

    assert asyncio.run(main()) < 5  # woken at once; before: the whole IDLE
