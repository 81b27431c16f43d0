"""`push --wait` and `wait --paths` with the real daemon, Nix and a file:// cache: they wait
for exactly their paths (ahead of the backlog), fail naming each dead or unqueued path with
its last error, and print plain progress lines and a summary when not on a terminal; plain
`wait` keeps its whole-queue meaning."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.daemon import NPQ, DaemonHarness
from tests.fixtures.gc import DownCache, collect

pytestmark = pytest.mark.integration

Factory = Callable[..., DaemonHarness]
# A row that fails transiently for as long as a test runs: it keeps the queue busy.
STUCK_RETRY = {"initial_delay": 0.2, "max_delay": 0.5, "max_attempts": 1000}


def unserialisable(path: Path) -> None:
    """`nix copy` fails for this store path every time (Nix cannot serialise a FIFO)."""
    path.unlink()
    os.mkfifo(path)


def test_push_wait_returns_for_its_paths_while_the_queue_stays_busy(
        npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(hook=False, queue={"retry": STUCK_RETRY})
    d.start()
    nonce = uuid.uuid4().hex
    stuck, mine = d.build("stuck", nonce), d.build("mine", nonce)
    unserialisable(stuck)
    d.cli("push", str(stuck))
    proc = d.cli("push", "--wait", "--timeout", "120", str(mine), timeout=200)
    assert "1 path(s) on every target (local)" in proc.stdout
    assert d.rows()[str(mine)][0] == "done"
    assert d.rows()[str(stuck)][0] in ("pending", "inflight")
    d.assert_substitutable(mine)
    # Plain `wait` still means the whole queue: the stuck row holds it up.
    plain = d.cli("wait", "--timeout", "2", check=False, timeout=60)
    assert plain.returncode == 9, plain.stderr
    # Whole-queue progress: counted from the first poll, the stuck row's bytes left.
    assert re.search(r"^wait: \[0s\] local: 0/1 paths, ", plain.stderr, re.M), plain.stderr
    assert re.search(r"^wait: local: 0/1 paths in \d+s, 0 dead$", plain.stderr, re.M)
    # And `wait --paths` on what is done returns at once.
    again = d.cli("wait", "--paths", str(mine), "--timeout", "30", timeout=60)
    assert "1 path(s) on every target" in again.stdout
    # status: the stuck path's bytes pending (once the daemon measured it), the recent rate.
    deadline = time.monotonic() + 60
    while (local := d.status()["local"])["bytes_pending"] == 0:
        assert time.monotonic() < deadline, local
        time.sleep(0.5)
    assert local["unsized_pending"] == 0 and local["recent_paths"] == 1
    assert local["recent_bytes"] > 0
    assert local["upload_rate_bytes"] == local["recent_bytes"] / 60
    row = d.cli("status").stdout.splitlines()[1].split()
    assert row[0] == "local" and row[-2].endswith("B") and row[-1].endswith("B/s"), row


def test_push_wait_names_each_dead_path_with_its_last_error(
        npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(hook=False, queue={"retry": {"initial_delay": 0.1,
                                                        "max_delay": 0.2, "max_attempts": 2}})
    d.start()
    nonce = uuid.uuid4().hex
    good, bad = d.build("good", nonce), d.build("bad", nonce)
    unserialisable(bad)
    proc = d.cli("push", "--wait", "--timeout", "120", str(good), str(bad), check=False,
                 timeout=200)
    assert proc.returncode == 10, proc.stderr  # DeadLetters
    line = next(x for x in proc.stderr.splitlines() if str(bad) in x)
    assert line.startswith(f"  local: {bad}: dead: ")
    assert len(line) > len(f"  local: {bad}: dead: ") + 10  # the last error, not a dash
    assert "1 path(s) did not reach every target (1 dead)" in proc.stderr
    assert str(good) not in proc.stderr.replace(f"{good}: ", "")  # only bad is named
    assert d.rows()[str(good)][0] == "done"


def test_wait_paths_fails_at_once_for_a_path_nobody_queued(
        npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(hook=False)
    d.start()
    path = d.build("never-pushed", uuid.uuid4().hex)
    started = time.monotonic()
    proc = d.cli("wait", "--paths", str(path), "--timeout", "60", check=False, timeout=120)
    assert proc.returncode == 14, proc.stderr  # NotQueued
    assert time.monotonic() - started < 30
    assert f"local: {path}: missing: not in the queue" in proc.stderr


def test_waited_paths_go_ahead_of_the_backlog(npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(hook=False, queue={"workers": 1, "batch_size": 4})
    d.start()
    nonce = uuid.uuid4().hex
    backlog = d.build_many("backlog", 120, nonce)
    mine = d.build("urgent", nonce)
    d.cli("push", *map(str, backlog))
    proc = d.cli("push", "--wait", "--timeout", "300", str(mine), timeout=400)
    assert proc.returncode == 0
    left = [p for p in backlog if d.rows()[str(p)][0] != "done"]
    # 30 batches of 4 stood before it; it went in one of the next few.
    assert len(left) > 60, f"only {len(left)} of 120 backlog paths left"
    d.wait_drained(timeout=300)


def test_progress_lines_and_summary_in_a_log(npq_daemon_factory: Factory,
                                             tmp_path: Path) -> None:
    d = npq_daemon_factory(hook=False, queue={"workers": 1, "batch_size": 2})
    d.start()
    paths = d.build_many("logged", 12, uuid.uuid4().hex)
    proc = d.cli("push", "--wait", "--timeout", "120", *map(str, paths), timeout=200)
    lines = proc.stderr.splitlines()
    assert re.match(r"push: \[0s\] local: \d+/12 paths, ", lines[0]), proc.stderr
    assert lines[-1].startswith("push: local: 12/12 paths, "), proc.stderr
    assert lines[-1].endswith("0 retries, 0 dead")


def test_on_a_terminal_a_live_bar_per_target(npq_daemon_factory: Factory) -> None:
    """stderr a real pseudo-terminal: rich draws a bar per target in place, and the
    summary stays once it is done."""
    d = npq_daemon_factory(hook=False, queue={"workers": 1, "batch_size": 2})
    d.start()
    paths = d.build_many("tty", 8, uuid.uuid4().hex)
    primary, secondary = pty.openpty()
    env = {**d.env(), "TERM": "xterm-256color", "COLUMNS": "160"}
    proc = subprocess.Popen([NPQ, "push", "--wait", "--timeout", "120", *map(str, paths),
                             "--config", str(d.config_path)], env=env,
                            stdout=subprocess.PIPE, stderr=secondary)
    os.close(secondary)
    screen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    assert proc.wait(timeout=120) == 0
    text = screen.decode("utf-8", "replace")
    assert "\x1b[" in text  # drawn in place with escape sequences
    assert "━" in text  # rich's bar
    assert re.search(r"local\s.*━.*\d+/8 paths", text), text[-2000:]
    assert "push: local: 8/8 paths" in text


def test_wait_paths_names_a_path_lost_to_garbage_collection(
        npq_daemon_factory: Factory, down_cache: DownCache) -> None:
    # A GC roots cap of one byte releases every root: the collector may take the path.
    d = npq_daemon_factory(hook=False, cache=down_cache.spec,
                           queue={"retry": STUCK_RETRY, "gc_roots": {"max_bytes": 1}})
    d.start()
    nonce = uuid.uuid4().hex
    lost = d.build("lost", nonce)
    d.cli("push", str(lost))
    deadline = time.monotonic() + 60
    while d.status()["local"]["released"] == 0:
        assert time.monotonic() < deadline, d.log_text()
        time.sleep(0.2)
    collect(d.nix)
    assert not lost.exists()
    kept = d.build("kept", nonce)
    d.cli("push", str(kept))
    down_cache.up()
    proc = d.cli("wait", "--paths", str(lost), str(kept), "--timeout", "120", check=False,
                 timeout=200)
    assert proc.returncode == 13, proc.stderr  # PathsLost
    assert (f"  local: {lost}: gone: left the local store before its upload "
            "(garbage-collected) after the GC roots cap released it") in proc.stderr
    assert d.rows()[str(kept)][0] == "done"


def test_push_wait_counts_excluded_paths_as_settled(npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(hook=False, filters={"exclude": ["skip*"]})
    d.start()
    nonce = uuid.uuid4().hex
    skipme, kept = d.build("skipme", nonce), d.build("kept", nonce)
    proc = d.cli("push", "--wait", "--timeout", "60", str(skipme), str(kept), timeout=120)
    assert ("2 path(s) on every target (local); 1 of them excluded by filters.exclude"
            in proc.stdout)
    assert str(skipme) not in d.rows() and d.rows()[str(kept)][0] == "done"
