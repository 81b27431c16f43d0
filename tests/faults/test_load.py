"""Load: many paths through 32 concurrent real hooks while uploads run, into nginx over
HTTP. Zero lost, zero queued twice, every path in the cache exactly once. The default run
uses 600 paths; the soak runs the full 10,000.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.nginx import NginxCache

from .audit import add_paths, audit, check, db_rows, feed, row, use_cache
from .figures import FIGURES

pytestmark = pytest.mark.integration

HOOKS = 32


def _load(factory: Any, cache: NginxCache, tmp_path: Path, n: int, name: str) -> None:
    d: DaemonHarness = factory(hook=False)
    use_cache(d, cache.url)
    d.start()
    paths = add_paths(d.nix, tmp_path, n)
    started = time.monotonic()
    fed = feed(d, paths, concurrency=HOOKS, per_hook=1, timeout=10)
    fed_seconds = time.monotonic() - started
    d.wait_drained(timeout=3600)
    seconds = time.monotonic() - started
    rows = db_rows(d.state_dir)
    assert len(rows) == n, f"{len(rows)} queue rows for {n} paths"
    outcome = audit(d, fed.queued, cache_dir=cache.cache_dir)
    check(outcome)
    assert len(fed.queued) == n
    puts = sum(1 for line in cache.access_log().splitlines()
               if '"PUT /' in line and ".narinfo HTTP" in line)
    assert puts == n, f"{puts} narinfo uploads for {n} paths"
    slowest = max(r.seconds for r in fed.runs)
    print(f"measured: {n} paths, {HOOKS} concurrent hooks: handed over in {fed_seconds:.1f} s "
          f"({fed.spooled} spooled, slowest hook {slowest * 1000:.0f} ms), drained in "
          f"{seconds:.1f} s, {puts} narinfo PUTs")
    FIGURES.record(row(name, outcome, faults=0, enqueued=len(fed.queued), seconds=seconds))


def test_load_32_concurrent_hooks(npq_daemon_factory: Any, nginx_cache: NginxCache,
                                  tmp_path: Path) -> None:
    _load(npq_daemon_factory, nginx_cache, tmp_path, 600, f"load: 600 paths, {HOOKS} hooks")


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_load_10000(npq_daemon_factory: Any, nginx_cache: NginxCache,
                         tmp_path: Path) -> None:
    _load(npq_daemon_factory, nginx_cache, tmp_path, 10_000,
          f"soak: load 10,000 paths, {HOOKS} hooks")
