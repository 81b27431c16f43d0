"""Another process holds the queue database locked (`BEGIN EXCLUSIVE`) while hooks enqueue
and uploads finish. Hooks give up at their timeout and spool; the daemon's writes wait on
the busy timeout and go through once the lock is gone. Paths reach the queue twice (the
late commit of a timed-out request, and the spool), and must be there once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.faults import hold_db_lock

from .audit import Feed, add_paths, audit, check, feed, row
from .figures import FIGURES

pytestmark = pytest.mark.integration


def _locked(factory: Any, tmp_path: Path, *, hold: float, name: str) -> None:
    d: DaemonHarness = factory(hook=False, queue={"batch_size": 4})
    d.start()
    paths = add_paths(d.nix, tmp_path, 24)
    started = time.monotonic()
    first = feed(d, paths[:8])  # uploads of these are running when the lock is taken
    fed: list[Feed] = []
    with hold_db_lock(d.state_dir / "queue.sqlite"):
        hooks = threading.Thread(target=lambda: fed.append(feed(d, paths[8:], timeout=2)))
        hooks.start()
        time.sleep(hold)
        assert d.running, d.log_text()[-3000:]
    hooks.join(timeout=300)
    assert fed, "the hooks did not finish"
    d.wait_drained(timeout=300)
    seconds = time.monotonic() - started
    queued = first.queued + fed[0].queued
    assert len(queued) == len(paths)
    outcome = audit(d, queued)
    check(outcome)
    print(f"measured: lock held {hold:.0f} s; {fed[0].spooled} of {len(fed[0].runs)} hook runs "
          f"timed out and spooled; drained in {seconds:.1f} s")
    FIGURES.record(row(name, outcome, faults=1, enqueued=len(queued), seconds=seconds))


def test_database_locked_by_another_process(npq_daemon_factory: Any, tmp_path: Path) -> None:
    _locked(npq_daemon_factory, tmp_path, hold=6, name="database locked 6 s")


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_database_locked_past_busy_timeout(npq_daemon_factory: Any,
                                                tmp_path: Path) -> None:
    # Longer than the store's 30 s busy timeout: writes fail, and must be retried.
    _locked(npq_daemon_factory, tmp_path, hold=45, name="soak: database locked 45 s")
