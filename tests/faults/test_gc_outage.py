"""A cache outage, the real garbage collector run again and again, and kill -9 of the daemon
in between: every path a hook handed over survives until it is uploaded (docs/gc-roots.md).

Paths come from `nix-store --add`, so nothing but the queue's GC roots holds them: a
collection deletes every one the queue failed to root.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.gc import DownCache, collect, root_names, status_totals

from .audit import HOOKS, add_paths, audit, check, feed, hook_argv, row, run_hook
from .figures import FIGURES

pytestmark = pytest.mark.integration

ROUNDS = 3
PER_FEED = 20


@pytest.mark.parametrize("hook", HOOKS)
def test_outage_repeated_gc_and_kill(npq_daemon_factory: Any, down_cache: DownCache,
                                     tmp_path: Path, hook: str) -> None:
    d: DaemonHarness = npq_daemon_factory(hook=False, cache=down_cache.spec,
                                          queue={"batch_size": 4, "workers": 2,
                                                 "retry": {"max_attempts": 1000}})
    d.start()
    started = time.monotonic()
    queued: list[str] = []
    faults = 0
    for n in range(ROUNDS):
        fed = feed(d, add_paths(d.nix, tmp_path / f"up{n}", PER_FEED), per_hook=2, hook=hook)
        queued += fed.queued
        collect(d.nix)
        d.kill()  # mid-retry: uploads in flight, roots held
        fed = feed(d, add_paths(d.nix, tmp_path / f"down{n}", PER_FEED), per_hook=2,
                   hook=hook)
        assert fed.spooled or hook == "shell", "the daemon is down: the hooks must spool"
        queued += fed.queued
        collect(d.nix)
        d.start()
        collect(d.nix)
        faults += 4  # one kill, three collections
    assert len(queued) == 2 * ROUNDS * PER_FEED
    missing = [p for p in queued if not Path(p).exists()]
    assert not missing, f"collected while queued: {missing[:3]}"
    down_cache.up()
    d.wait_drained(timeout=600)
    outcome = audit(d, queued, cache_dir=down_cache.directory)
    check(outcome)
    totals = status_totals(d)
    assert (totals["gone"], totals["released"]) == (0, 0), totals
    assert not root_names(d.nix)
    collect(d.nix)  # and now nothing holds them any more
    assert not [p for p in queued if Path(p).exists()]
    FIGURES.record(row(f"cache outage, {ROUNDS} kill -9 and {3 * ROUNDS} GCs while queued",
                       outcome, faults=faults, enqueued=len(queued),
                       seconds=time.monotonic() - started))


def test_control_without_roots_the_collector_takes_them(
        npq_daemon_factory: Any, down_cache: DownCache, tmp_path: Path) -> None:
    """The same feed with `queue.gc_roots.enable: false` (and so the hook's --no-gc-roots):
    one collection deletes every queued path. Without this, the test above could pass on a
    collector that deletes nothing."""
    d: DaemonHarness = npq_daemon_factory(hook=False, cache=down_cache.spec,
                                          queue={"gc_roots": {"enable": False}})
    d.start()
    argv = [*feed_argv(d), "--no-gc-roots"]
    paths = add_paths(d.nix, tmp_path / "control", 10)
    for path in paths:
        assert run_hook(d, [path], argv=argv).returncode == 0
    # A running `nix copy` names its paths in argv, which the collector also counts as
    # roots (runtime roots): stop the daemon, as in the kill -9 rounds above.
    d.stop()
    collect(d.nix)
    assert not [p for p in paths if Path(p).exists()]
    assert not root_names(d.nix)


def feed_argv(d: DaemonHarness) -> list[str]:
    return [a for a in hook_argv(d) if a != "--state-dir" and a != str(d.nix.state_dir)]


@pytest.mark.soak
def test_thousand_path_outage_disk_held(npq_daemon_factory: Any, down_cache: DownCache,
                                        tmp_path: Path) -> None:
    """1,000 builds (10 KiB each) during a cache outage, a collection, then the cache comes
    back: what the roots hold meanwhile, and nothing lost."""
    n, size = 1000, 10 * 1024
    d: DaemonHarness = npq_daemon_factory(cache=down_cache.spec,
                                          queue={"retry": {"max_attempts": 1000}})
    d.start()
    started = time.monotonic()
    fill = f'(builtins.concatStringsSep "" (builtins.genList (_: "0123456789abcdef") {size // 16}))'
    exprs = " ".join(
        f'(builtins.derivation {{ name = "outage-{i}"; system = builtins.currentSystem; '
        f'builder = "/bin/sh"; args = [ "-c" "printf %s \\"$nonce$fill\\" > $out" ]; '
        f'nonce = "{i} {tmp_path}"; fill = {fill}; }})' for i in range(n))
    expr = tmp_path / "outage.nix"
    expr.write_text(f"[ {exprs} ]", "utf-8")  # too long for one argv
    paths = [Path(p) for p in d.nix.run(["nix-build", "--no-out-link", str(expr)],
                                        timeout=1800).stdout.split()]
    assert len(paths) == n and len(root_names(d.nix)) == n
    deadline = time.monotonic() + 300
    while status_totals(d)["pending"] + status_totals(d)["inflight"] + \
            status_totals(d)["dead"] < n or not _all_sized(d):
        assert time.monotonic() < deadline, "the daemon did not measure every queued path"
        time.sleep(1)
    held = _sized_bytes(d)
    on_disk = sum(p.stat().st_blocks * 512 for p in paths)
    roots_dir = d.nix.state_dir / "gcroots/nix-push-queue"
    dir_bytes = roots_dir.stat().st_blocks * 512
    collect(d.nix)
    assert all(p.exists() for p in paths)
    down_cache.up()
    d.wait_drained(timeout=1800)
    totals = status_totals(d)
    assert (totals["done"], totals["gone"], totals["released"]) == (n, 0, 0), totals
    assert not root_names(d.nix)
    print(f"\n{n}-path outage: roots held {held} NAR bytes ({on_disk} bytes on disk, "
          f"{on_disk / n:.0f} per path); the roots directory itself {dir_bytes} bytes; "
          f"0 lost after a GC; {time.monotonic() - started:.0f} s")


def _db(d: DaemonHarness) -> list[tuple[str, int | None]]:
    import sqlite3

    conn = sqlite3.connect(f"file:{d.state_dir / 'queue.sqlite'}?mode=ro", uri=True)
    try:
        return list(conn.execute("SELECT path, size FROM jobs"))
    finally:
        conn.close()


def _all_sized(d: DaemonHarness) -> bool:
    return all(size is not None for _, size in _db(d))


def _sized_bytes(d: DaemonHarness) -> int:
    return sum(size or 0 for _, size in _db(d))
