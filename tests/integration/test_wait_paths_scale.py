"""What a CI log shows for a 1,000-path `push --wait` (stderr is not a terminal: plain lines
every few seconds and a summary), and how soon after the last upload it returns.

Prints the log and the figures (pytest -s shows them; docs/ci.md quotes a run).
"""

from __future__ import annotations

import itertools
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.faults.audit import add_paths
from tests.fixtures.daemon import NPQ, DaemonHarness

pytestmark = pytest.mark.integration

PATHS = 1000
# The client polls every 0.5 s; process exit and a loaded machine add some.
RETURN_ALLOWED = 3.0


def test_push_wait_of_1000_paths_in_a_ci_log(npq_daemon_factory: Callable[..., DaemonHarness]
                                             ) -> None:
    d = npq_daemon_factory(hook=False)
    d.start()
    # Real, fresh store paths made cheaply: nix-build of 1,000 derivations takes minutes on
    # Nix 2.34, and the test measures the queue, not the builds.
    paths = add_paths(d.nix, d.root, PATHS)
    assert len(paths) == PATHS
    started = time.time()
    proc = subprocess.run([NPQ, "push", "--wait", "--timeout", "900", *paths,
                           "--config", str(d.config_path)], env=d.env(), capture_output=True,
                          text=True, timeout=1200, check=False)
    returned = time.time()
    assert proc.returncode == 0, proc.stderr[-3000:]
    with sqlite3.connect(d.state_dir / "queue.sqlite") as db:
        (last_upload, done), = db.execute(
            "SELECT max(updated_at), count(*) FROM jobs WHERE state = 'done'")
    assert done == PATHS
    lag = returned - last_upload
    assert 0 <= lag <= RETURN_ALLOWED, lag

    lines = proc.stderr.splitlines()
    progress = [x for x in lines if re.match(r"push: \[\d+[sm]", x)]
    # The first line comes at once and names the total; how many are done by then is the
    # daemon's head start over the client's first poll (192 on a loaded machine).
    first = re.match(rf"push: \[0s\] local: (\d+)/{PATHS} paths", progress[0] if progress else "")
    assert first and int(first.group(1)) < PATHS, progress
    stamps = [int(m.group(1)) for x in progress
              if (m := re.match(r"push: \[(\d+)s\]", x))]
    # 5 s apart, each stamp rounded to the second
    assert all(b - a >= 4 for a, b in itertools.pairwise(stamps)), stamps
    assert re.fullmatch(rf"push: local: {PATHS}/{PATHS} paths, [\d.]+ [KMG]?i?B in \S+ "
                        r"\([\d.]+ [KMG]?i?B/s\), 0 retries, 0 dead", lines[-1]), lines[-1]
    assert proc.stdout.splitlines() == [
        f"queued {PATHS}, already queued or excluded 0 ({PATHS} path(s))",
        f"{PATHS} path(s) on every target (local)"]
    # In a job's log the two streams interleave so: the enqueue, progress, the outcome.
    out = proc.stdout.splitlines()
    print(f"\n--- CI log of `push --wait` with {PATHS} paths ---")
    print("\n".join([out[0], *lines, out[1]]))
    print(f"--- push --wait took {returned - started:.1f} s; returned {lag:.2f} s after the "
          "last upload was committed")
