"""kill -9 of the daemon at random moments while hooks enqueue and uploads run: every path
a hook handed over (acknowledged or spooled) reaches the cache, none twice in the queue.

The killed daemon's `nix copy` children are left running as orphans, which is harsher than
systemd (it stops the whole cgroup): they race the restarted daemon's re-uploads.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.nginx import NginxCache

from .audit import Feed, add_paths, audit, check, feed, row, use_cache
from .figures import FIGURES

pytestmark = pytest.mark.integration


def kill_storm(d: DaemonHarness, paths: list[str], *, kills: int, seed: int,
               max_gap: float) -> tuple[Feed, float]:
    """Hooks feed `paths` from a thread while the main thread kills and restarts the daemon
    `kills` times, `max_gap` seconds apart at most; then the queue is drained."""
    rng = random.Random(seed)
    result: list[Feed] = []
    feeder = threading.Thread(target=lambda: result.append(
        feed(d, paths, concurrency=4, per_hook=2, timeout=5)))
    started = time.monotonic()
    feeder.start()
    for _ in range(kills):
        time.sleep(rng.uniform(0.0, max_gap))
        d.kill()
        d.start()
    feeder.join(timeout=900)
    assert result, "the hook feeder did not finish"
    d.wait_drained(timeout=600)
    return result[0], time.monotonic() - started


def _run(npq_daemon_factory: Any, nginx_cache: NginxCache, tmp_path: Path, *, n: int,
         kills: int, name: str) -> None:
    d: DaemonHarness = npq_daemon_factory(hook=False, queue={"batch_size": 4, "workers": 2})
    use_cache(d, nginx_cache.url)
    d.start()
    paths = add_paths(d.nix, tmp_path, n)
    seed = random.randrange(1 << 30)
    fed, seconds = kill_storm(d, paths, kills=kills, seed=seed, max_gap=1.5)
    assert not fed.refused, f"hooks could not queue: {fed.runs[0].stderr}"
    outcome = audit(d, fed.queued, cache_dir=nginx_cache.cache_dir)
    check(outcome)
    puts = [line for line in nginx_cache.access_log().splitlines()
            if '"PUT /' in line and '.narinfo HTTP' in line]
    reuploads = len(puts) - len(outcome.uploaded)  # at-least-once: a kill may repeat a PUT
    print(f"measured: seed {seed}, {kills} kills, {n} paths, {fed.spooled} hook(s) spooled, "
          f"{d.starts} daemon starts, {reuploads} narinfo(s) uploaded again, {seconds:.1f} s")
    FIGURES.record(row(name, outcome, faults=kills, enqueued=len(fed.queued), seconds=seconds))


def test_sigkill_during_enqueue_and_drain(npq_daemon_factory: Any, nginx_cache: NginxCache,
                                          tmp_path: Path) -> None:
    _run(npq_daemon_factory, nginx_cache, tmp_path, n=60, kills=5, name="kill -9 x5")


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_sigkill(npq_daemon_factory: Any, nginx_cache: NginxCache,
                      tmp_path: Path) -> None:
    _run(npq_daemon_factory, nginx_cache, tmp_path, n=600, kills=60, name="soak: kill -9 x60")
