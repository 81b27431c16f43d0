"""The cache host's link fails during the drain: cut (veth down: connecting fails at once),
blackholed (every packet dropped: connections hang until `upload_timeout` kills `nix copy`),
and 30 % packet loss each way. Uploads back off and retry; after the link returns every
path is in the cache. The cache host is bench's: nginx WebDAV in its own network namespace,
the daemon in the builder namespace (its unix socket is a file, so hooks reach it from here).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from bench.cachehost import Network

from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.faults import PacketFilter, needs_root

from .audit import add_paths, audit, check, feed, row, use_cache
from .figures import FIGURES

pytestmark = [pytest.mark.integration, pytest.mark.netns, needs_root]

# Enough attempts that an outage of a minute backs off instead of dead-lettering.
PATIENT = {"max_attempts": 30, "initial_delay": 0.5, "max_delay": 4}


def _daemon(factory: Any, net: Network, **queue: Any) -> DaemonHarness:
    d: DaemonHarness = factory(hook=False, queue={"retry": PATIENT, **queue})
    use_cache(d, net.url)
    d.start(argv_prefix=net.argv([]))
    return d


def _failures(d: DaemonHarness) -> int:
    """Failed `nix copy` runs so far, as the daemon logged them (a failure that a split or a
    retry later repaired leaves no trace in the queue)."""
    log = d.log_text()
    return log.count(") failed (attempt ") + log.count(" failed (transient); splitting")


def test_link_cut_and_blackhole_then_restored(npq_daemon_factory: Any,
                                              cache_network: Network, tmp_path: Path) -> None:
    net = cache_network
    d = _daemon(npq_daemon_factory, net, batch_size=4, upload_timeout=10)
    paths = add_paths(d.nix, tmp_path, 40)
    started = time.monotonic()
    fed = feed(d, paths[:10])
    d.wait_drained(timeout=120)  # the link works before the faults

    # Link down while hooks keep handing over paths: uploads fail fast and back off.
    net.apply("down")
    fed2 = feed(d, paths[10:25])
    time.sleep(12)  # longer than Nix's own download retries (5 tries, backing off)
    failed_down = _failures(d)
    net.apply("normal")
    # Blackhole: packets vanish, `nix copy` hangs until upload_timeout kills it.
    blackhole = PacketFilter(net.cache_ns)
    blackhole.cut()
    fed3 = feed(d, paths[25:])
    time.sleep(14)
    failed_total = _failures(d)
    blackhole.restore()
    d.wait_drained(timeout=300)
    seconds = time.monotonic() - started

    queued = fed.queued + fed2.queued + fed3.queued
    assert len(queued) == len(paths)
    assert failed_down > 0, "the cut link never failed an upload: was it cut?"
    assert failed_total > failed_down, "the blackhole never failed an upload"
    outcome = audit(d, queued, cache_dir=net.cache_dir)
    check(outcome)
    print(f"measured: {failed_down} path(s) failed during the cut, {failed_total} in all; "
          f"drained {len(paths)} paths in {seconds:.1f} s")
    FIGURES.record(row("link cut + blackhole", outcome, faults=2, enqueued=len(queued),
                       seconds=seconds))


def _lossy(factory: Any, net: Network, tmp_path: Path, n: int, name: str) -> None:
    d = _daemon(factory, net, batch_size=8, upload_timeout=120)
    paths = add_paths(d.nix, tmp_path, n)
    lossy = PacketFilter(net.cache_ns)
    lossy.loss(0.30)
    started = time.monotonic()
    try:
        fed = feed(d, paths, per_hook=2)
        d.wait_drained(timeout=900)
    finally:
        lossy.loss(0)
    seconds = time.monotonic() - started
    outcome = audit(d, fed.queued, cache_dir=net.cache_dir)
    check(outcome)
    print(f"measured: {n} paths through 30 % packet loss in {seconds:.1f} s, "
          f"{_failures(d)} failed `nix copy` run(s) retried")
    FIGURES.record(row(name, outcome, faults=1, enqueued=len(fed.queued), seconds=seconds))


def test_packet_loss_30_percent(npq_daemon_factory: Any, cache_network: Network,
                                tmp_path: Path) -> None:
    _lossy(npq_daemon_factory, cache_network, tmp_path, 8, "30% packet loss")


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_packet_loss(npq_daemon_factory: Any, cache_network: Network,
                          tmp_path: Path) -> None:
    _lossy(npq_daemon_factory, cache_network, tmp_path, 100, "soak: 30% packet loss")


