"""A small state file system fills while paths arrive, then is freed: the queue holds its rows
and resumes by itself (the full-disk rule, docs/internals.md), with 0 lost and 0 stuck.

The queue's database and WAL live on a tmpfs of NPQ_STATE_FS_KIB KiB (default 2048, the
issue's 2 MiB); the spool is elsewhere. 400 paths: 200 arrive, the disk is filled, 200 more
arrive on the full disk (acknowledged while the WAL's space lasts, spooled after), a plain
`wait` with no timeout runs all along and must not give up, then the space comes back.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import NPQ, DaemonHarness
from tests.fixtures.faults import fill_disk, mount_tmpfs, needs_root, wait_for

from .audit import add_paths, audit, check, feed, row
from .figures import FIGURES

pytestmark = pytest.mark.integration

FS_KIB = int(os.environ.get("NPQ_STATE_FS_KIB", "2048"))
N = 400
FULL_FOR = 15.0  # seconds the disk stays full once the queue has refused a write


def _waiting_for_space(d: DaemonHarness) -> bool:
    return any("disk is full" in str(t.get("last_error") or "") for t in d.status().values())


@needs_root
def test_fill_free_drain(npq_daemon_factory: Any, tmp_path: Path) -> None:
    with mount_tmpfs(tmp_path / "statefs", FS_KIB) as fs:
        d: DaemonHarness = npq_daemon_factory(hook=False, queue={
            "state_dir": str(fs / "state"), "batch_size": 4})
        d.start()
        paths = add_paths(d.nix, tmp_path, N)
        started = time.monotonic()
        first = feed(d, paths[:N // 2], per_hook=4)
        filler = fill_disk(fs)
        waiter = subprocess.Popen([NPQ, "wait", "--config", str(d.config_path)], env=d.env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            second = feed(d, paths[N // 2:], per_hook=4, timeout=5)
            wait_for("the queue to refuse a write on the full disk",
                     lambda: "disk is full" in d.log_text(), timeout=120)
            wait_for("status to show the wait for space", lambda: _waiting_for_space(d),
                     timeout=60)
            time.sleep(FULL_FOR)
            assert d.running, d.log_text()[-3000:]
            assert waiter.poll() is None, f"wait gave up while the daemon waited for space: " \
                                          f"{waiter.communicate()}"
            held = d.status()
            filler.unlink()
            _, err = waiter.communicate(timeout=300)
        finally:
            if waiter.poll() is None:
                waiter.kill()
        assert waiter.returncode == 0, err + d.log_text()[-3000:]
        seconds = time.monotonic() - started
        queued = first.queued + second.queued
        assert len(queued) == N and not second.refused
        outcome = audit(d, queued)
        check(outcome)
        assert len(outcome.uploaded) == N
        assert not any(t["pending"] or t["inflight"] for t in outcome.status.values())
        assert not _waiting_for_space(d)
        log = d.log_text()
        assert "Traceback" not in log, log[-3000:]
        print(f"\nmeasured: {FS_KIB} KiB state fs, {N} paths, {second.spooled} hook run(s) "
              f"spooled on the full disk; while full: "
              f"{ {n: (t['pending'], t['inflight']) for n, t in held.items()} } "
              f"(pending, uploading); drained in {seconds:.1f} s, 0 lost")
        FIGURES.record(row(f"state fs {FS_KIB} KiB: fill, free, drain", outcome, faults=1,
                           enqueued=N, seconds=seconds))
        d.stop()
