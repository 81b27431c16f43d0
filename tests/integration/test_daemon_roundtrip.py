"""The whole chain with real parts: nix-build -> post-build-hook -> daemon -> nix copy ->
file:// cache -> delete -> substitute back with signatures required."""

from __future__ import annotations

import time
import uuid

import pytest

from nix_push_queue.nixenv import text_derivation
from tests.fixtures.daemon import DaemonHarness

pytestmark = pytest.mark.integration


def test_build_is_pushed_signed_and_substitutable(npq_daemon: DaemonHarness) -> None:
    nonce = uuid.uuid4().hex
    started = time.monotonic()
    dep = npq_daemon.build("dep", f"dep {nonce}")
    built = time.monotonic()
    path = npq_daemon.build("top", f"top {nonce}",
                            deps=(f"({text_derivation('dep', f'dep {nonce}')})",))
    npq_daemon.wait_drained(timeout=120)
    drained = time.monotonic()
    for p in (dep, path):
        npq_daemon.assert_signed(p)
    npq_daemon.assert_substitutable(path, dep)
    stats = npq_daemon.status()["local"]
    assert stats["done"] >= 2 and stats["pending"] == 0 and stats["dead"] == 0
    print(f"measured: first build {built - started:.2f} s, second build + drain "
          f"{drained - built:.2f} s")
