"""kill -9 of the daemon at random moments while hooks enqueue and uploads run: every path
a hook handed over (acknowledged or spooled) reaches the cache, none twice in the queue.

And the killed daemon's `nix copy` children die with it (PR_SET_PDEATHSIG; systemd's
KillMode=control-group does the same for the unit's cgroup): none keeps uploading for a
daemon that is gone, none races the restarted daemon's uploads.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.faults import wait_for
from tests.fixtures.nginx import NginxCache

from .audit import HOOKS, Feed, add_paths, audit, check, feed, row, run_hook, use_cache
from .figures import FIGURES

pytestmark = pytest.mark.integration


def kill_storm(d: DaemonHarness, paths: list[str], *, kills: int, seed: int,
               max_gap: float, hook: str = "python") -> tuple[Feed, float]:
    """Hooks feed `paths` from a thread while the main thread kills and restarts the daemon
    `kills` times, `max_gap` seconds apart at most; then the queue is drained."""
    rng = random.Random(seed)
    result: list[Feed] = []
    feeder = threading.Thread(target=lambda: result.append(
        feed(d, paths, concurrency=4, per_hook=2, timeout=5, hook=hook)))
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
         kills: int, name: str, hook: str = "python") -> None:
    d: DaemonHarness = npq_daemon_factory(hook=False, queue={"batch_size": 4, "workers": 2})
    use_cache(d, nginx_cache.url)
    d.start()
    paths = add_paths(d.nix, tmp_path, n)
    seed = random.randrange(1 << 30)
    fed, seconds = kill_storm(d, paths, kills=kills, seed=seed, max_gap=1.5, hook=hook)
    assert not fed.refused, f"hooks could not queue: {fed.runs[0].stderr}"
    outcome = audit(d, fed.queued, cache_dir=nginx_cache.cache_dir)
    check(outcome)
    puts = [line for line in nginx_cache.access_log().splitlines()
            if '"PUT /' in line and '.narinfo HTTP' in line]
    reuploads = len(puts) - len(outcome.uploaded)  # at-least-once: a kill may repeat a PUT
    print(f"measured: seed {seed}, {kills} kills, {n} paths, {fed.spooled} hook(s) spooled, "
          f"{d.starts} daemon starts, {reuploads} narinfo(s) uploaded again, {seconds:.1f} s")
    FIGURES.record(row(name, outcome, faults=kills, enqueued=len(fed.queued), seconds=seconds))


@pytest.mark.parametrize("hook", HOOKS)
def test_sigkill_during_enqueue_and_drain(npq_daemon_factory: Any, nginx_cache: NginxCache,
                                          tmp_path: Path, hook: str) -> None:
    _run(npq_daemon_factory, nginx_cache, tmp_path, n=60, kills=5,
         name=f"kill -9 x5 ({hook} hook)", hook=hook)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_sigkill(npq_daemon_factory: Any, nginx_cache: NginxCache,
                      tmp_path: Path) -> None:
    _run(npq_daemon_factory, nginx_cache, tmp_path, n=600, kills=60, name="soak: kill -9 x60")


@contextlib.contextmanager
def stalling_cache() -> Iterator[str]:
    """An HTTP "cache" that accepts connections and never answers: every `nix copy` to it
    hangs, so it is surely running when the daemon is killed."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()
        for conn in held:
            conn.close()


def nix_copies(url: str) -> list[int]:
    """Pids of running `nix copy` processes whose command line names `url`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"copy" in cmd and any(url.encode() in arg for arg in cmd):
            found.append(int(entry.name))
    return found


def test_sigkill_takes_running_nix_copy_with_it(npq_daemon_factory: Any,
                                                tmp_path: Path) -> None:
    with stalling_cache() as url:
        d: DaemonHarness = npq_daemon_factory(hook=False,
                                              queue={"workers": 2, "batch_size": 1})
        use_cache(d, url)
        d.start()
        paths = add_paths(d.nix, tmp_path, 3)
        assert run_hook(d, paths).returncode == 0
        wait_for("two `nix copy` running", lambda: len(nix_copies(url)) >= 2, timeout=120)
        before = nix_copies(url)
        d.kill()
        started = time.monotonic()
        wait_for("the killed daemon's `nix copy` children to die",
                 lambda: not nix_copies(url), timeout=10)
        print(f"measured: {len(before)} `nix copy` running at kill -9, all gone "
              f"{(time.monotonic() - started) * 1000:.0f} ms later")
