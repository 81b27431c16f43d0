"""The whole chain with real parts: nix-build -> post-build-hook -> daemon -> nix copy ->
file:// cache -> delete -> substitute back with signatures required."""

from __future__ import annotations

import time
import uuid

import pytest

from nix_push_queue.nix.isolated import text_derivation
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


def test_latency_from_build_end_to_narinfo(npq_daemon: DaemonHarness) -> None:
    """Measured, not asserted: nix-build returns after its hook ran, so this is the
    daemon's share (batch_wait 0.05 s in the fixture + one `nix copy`)."""
    nonce = uuid.uuid4().hex
    latencies = []
    for i in range(5):
        path = npq_daemon.build(f"latency-{i}", f"{nonce} {i}")
        built = time.monotonic()
        deadline = built + 120
        while not npq_daemon.narinfo(path).exists():
            assert time.monotonic() < deadline, npq_daemon.log_text()
            time.sleep(0.005)
        latencies.append(time.monotonic() - built)
    npq_daemon.assert_signed(path)
    print("measured: build end -> narinfo present: "
          + ", ".join(f"{s * 1000:.0f} ms" for s in latencies))
