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

from .audit import add_paths, audit, check, feed, hook_argv, row, run_hook
from .figures import FIGURES

pytestmark = pytest.mark.integration

ROUNDS = 3
PER_FEED = 20


def test_outage_repeated_gc_and_kill(npq_daemon_factory: Any, down_cache: DownCache,
                                     tmp_path: Path) -> None:
    d: DaemonHarness = npq_daemon_factory(hook=False, cache=down_cache.spec,
                                          queue={"batch_size": 4, "workers": 2,
                                                 "retry": {"max_attempts": 1000}})
    d.start()
    started = time.monotonic()
    queued: list[str] = []
    faults = 0
    for n in range(ROUNDS):
        fed = feed(d, add_paths(d.nix, tmp_path / f"up{n}", PER_FEED), per_hook=2)
        queued += fed.queued
        collect(d.nix)
        d.kill()  # mid-retry: uploads in flight, roots held
        fed = feed(d, add_paths(d.nix, tmp_path / f"down{n}", PER_FEED), per_hook=2)
        assert fed.spooled, "the daemon is down: the hooks must spool"
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
