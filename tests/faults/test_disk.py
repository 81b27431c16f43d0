"""The disk under the queue fills up, and the spool holds garbage.

- Database disk full (a small tmpfs under state_dir, filled): once the WAL's kept space is
  used up, enqueues fail, hooks spool instead and exit 0; once space returns the daemon
  ingests the spool and drains.
- Spool and database disk full: the hook exits 0 and says in its log why nothing was queued
  (and how to push later); once space returns new builds queue and drain again.
- Corrupt and truncated spool files: valid lines are queued, bad ones logged and skipped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.wire import spool
from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.faults import fill_disk, mount_tmpfs, needs_root, wait_for

from .audit import HOOKS, add_paths, audit, check, db_rows, feed, row
from .figures import FIGURES
from .strategies import is_store_path

pytestmark = pytest.mark.integration

FS_KIB = 4096  # a few MiB: room for the queue database, nothing to spare once filled
# Hook runs per round on the full disk, and rounds at most: the WAL's kept 512 KiB holds at
# most 128 commits of one page, and every hook run commits at least once.
ROUND = 10
FULL_ROUNDS = 15


@needs_root
def test_database_disk_full(npq_daemon_factory: Any, tmp_path: Path) -> None:
    with mount_tmpfs(tmp_path / "statefs", FS_KIB) as fs:
        d: DaemonHarness = npq_daemon_factory(hook=False, queue={
            "state_dir": str(fs / "state"), "batch_size": 4})
        d.start()
        paths = add_paths(d.nix, tmp_path, 10 + FULL_ROUNDS * ROUND)
        started = time.monotonic()
        feeds = [feed(d, paths[:10])]
        filler = fill_disk(fs)
        # The bounded WAL keeps its space (daemon/dbconn.py), so the first commits after the
        # disk filled still fit; once it is used up they fail and the hooks spool. How many
        # fit depends on how far the drain got: feed until one spools.
        rest = paths[10:]
        while rest and not any(f.spooled for f in feeds[1:]):
            feeds.append(feed(d, rest[:ROUND], timeout=5))
            rest = rest[ROUND:]
        runs = sum(len(f.runs) for f in feeds[1:])
        assert any(f.spooled for f in feeds[1:]), \
            f"{runs} hook runs on a full database disk, none spooled:\n{d.log_text()[-3000:]}"
        time.sleep(3)  # the daemon retries the spool and the queue against the full disk
        assert d.running, d.log_text()[-3000:]
        filler.unlink()
        d.wait_drained(timeout=300)
        seconds = time.monotonic() - started
        queued = [p for f in feeds for p in f.queued]
        assert len(queued) == len(paths) - len(rest)
        outcome = audit(d, queued)
        check(outcome)
        spooled = sum(f.spooled for f in feeds[1:])
        print(f"measured: {spooled} of {runs} hook runs spooled while the database disk was "
              "full")
        FIGURES.record(row("database disk full", outcome, faults=1, enqueued=len(queued),
                           seconds=seconds))
        d.stop()


@needs_root
@pytest.mark.parametrize("hook", HOOKS)
def test_spool_and_database_disk_full(npq_daemon_factory: Any, tmp_path: Path,
                                      hook: str) -> None:
    with mount_tmpfs(tmp_path / "statefs", FS_KIB) as fs:
        d: DaemonHarness = npq_daemon_factory(hook=False, queue={
            "state_dir": str(fs / "state"), "spool_dir": str(fs / "spool")})
        d.start()
        paths = add_paths(d.nix, tmp_path, 12)
        started = time.monotonic()
        filler = fill_disk(fs)
        refused = feed(d, paths[:6], per_hook=3, timeout=5, hook=hook)
        # Every hook exited 0 (feed checks) and said why nothing was queued.
        for run in refused.runs:
            assert "NOT queued" in run.stderr, run.stderr
            assert "disk is full" in run.stderr or "No space left" in run.stderr, run.stderr
            assert "nix-push-queue push" in run.stderr, run.stderr
        assert not refused.queued
        filler.unlink()
        later = feed(d, paths[6:], hook=hook)
        d.wait_drained(timeout=300)
        outcome = audit(d, later.queued)
        check(outcome)
        FIGURES.record(row("spool + database disk full", outcome, faults=1,
                           enqueued=len(later.queued), seconds=time.monotonic() - started))
        print(f"measured: {len(refused.refused)} path(s) reported NOT queued by the hook, "
              f"e.g.: {refused.runs[0].stderr.splitlines()[0]}")
        d.stop()


def test_corrupt_and_truncated_spool_files(npq_daemon_factory: Any, tmp_path: Path) -> None:
    d: DaemonHarness = npq_daemon_factory(hook=False)
    store = str(d.config["nix"]["store_dir"])
    paths = add_paths(d.nix, tmp_path, 10)
    d.spool_dir.mkdir(parents=True, exist_ok=True)
    spool.write_spool(d.spool_dir, paths[:2])
    raw = {
        "torn.spool": (paths[2] + "\n" + paths[3][:-5]).encode(),  # crash mid-write
        "garbage.spool": b"\x00\xff\xfe garbage\n" + paths[4].encode() + b"\n\xc0\xaf\n",
        "hostile.spool": "\n".join([
            "/etc/passwd", f"{store}/../../etc/shadow", f"{paths[5]}/../x",
            f"{paths[5]};rm -rf /", "relative/path", paths[5], "", "   ", paths[6],
        ]).encode() + b"\n",
        "empty.spool": b"",
        "crlf.spool": (paths[7] + "\r\n").encode(),
    }
    for name, data in raw.items():
        (d.spool_dir / name).write_bytes(data)
    # A hook that died before its rename leaves a hidden temp file: never ingested.
    (d.spool_dir / ".123-1-ab.tmp").write_text(paths[8] + "\n")
    started = time.monotonic()
    d.start()
    # And one more garbage file while the daemon runs (the directory poll ingests it).
    (d.spool_dir / "late.spool").write_bytes(b"\xff" * 100 + b"\n" + paths[9].encode() + b"\n")
    wait_for("the spool to be ingested",
             lambda: not list(d.spool_dir.glob("*.spool")), timeout=60)
    d.wait_drained(timeout=300)
    expected = [*paths[:3], paths[4], paths[5], paths[6], paths[9]]
    outcome = audit(d, expected)
    check(outcome)
    queued = {r.path for r in db_rows(d.state_dir)}
    assert queued == set(expected), sorted(queued ^ set(expected))
    assert all(is_store_path(store, p) for p in queued)
    assert paths[8] not in queued and paths[7] not in queued
    log = d.log_text()
    assert log.count("skipping invalid line") >= 8, log[-3000:]
    assert d.running
    FIGURES.record(row("corrupt + truncated spool", outcome, faults=len(raw) + 2,
                       enqueued=len(expected), seconds=time.monotonic() - started))
