"""The spool as a careless or hostile user may leave it, with the real daemon running:
directories, symlinks, FIFOs, unreadable, huge, binary and torn entries named `*.spool`.
Each is quarantined with a log line and counted in `status`; every readable file around it
is ingested. And `wait` (even with only `--socket`) never passes while the spool holds
files, however the hook's writes and the daemon's polls interleave.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nix_push_queue.wire import spool
from tests.fixtures.daemon import NPQ, DaemonHarness
from tests.fixtures.faults import hold_db_lock

from . import daemon_strategies as DS
from . import strategies as S
from .audit import add_paths, db_rows
from .figures import FIGURES, Row

pytestmark = pytest.mark.integration


def wait_socket_only(d: DaemonHarness, timeout: float) -> subprocess.CompletedProcess[str]:
    """`wait --socket S`, no config: what the issue's CI job ran."""
    return subprocess.run([NPQ, "wait", "--socket", d.socket_path, "--timeout", str(timeout)],
                          env=d.env(), capture_output=True, text=True, timeout=timeout + 60,
                          check=False)


# `wait` passed the barrier: drained (0), or drained with the made-up paths reported gone
# from the local store (13, LostPaths), which is what these paths are.
PASSED = (0, 13)


def top_level_spool(d: DaemonHarness) -> list[str]:
    return sorted(p.name for p in d.spool_dir.glob("*.spool"))


def lost_paths(state_dir: Path) -> set[str]:
    """Paths in the queue's `lost` table (read-only: the daemon is running)."""
    conn = sqlite3.connect(f"file:{state_dir / 'queue.sqlite'}?mode=ro", uri=True, timeout=60)
    try:
        return {path for (path,) in conn.execute("SELECT path FROM lost")}
    finally:
        conn.close()


def check_wait(d: DaemonHarness, expected: set[str], phantoms: set[str],
               entries: list[DS.SpoolEntry]) -> None:
    """`wait` drains the spool; exits 13 naming the count of lost paths, exactly `phantoms`,
    while there are some, else 0; every other expected path is queued."""
    run = wait_socket_only(d, 120)
    context = (entries, run.stderr, d.log_text()[-3000:])
    if phantoms:
        assert run.returncode == 13, context
        assert f"local: {len(phantoms)} gone (0 after the GC roots cap" in run.stderr, context
    else:
        assert run.returncode == 0, context
    assert top_level_spool(d) == [], "wait passed with spool entries left"
    assert lost_paths(d.state_dir) == phantoms, context
    queued = {r.path for r in db_rows(d.state_dir)}
    assert expected - phantoms <= queued, sorted(expected - phantoms - queued)
    assert not queued & phantoms, sorted(queued & phantoms)


def test_fuzzed_spool_entries(npq_daemon_factory: Any, tmp_path: Path) -> None:
    d: DaemonHarness = npq_daemon_factory(hook=False, queue={"batch_wait": 0.2})
    d.start()
    store = str(d.config["nix"]["store_dir"])
    pool = add_paths(d.nix, tmp_path, 30)
    canary = str(tmp_path / "pwned")
    expected: set[str] = set()
    # Well-formed store paths among a torn entry's hostile lines that were never in the
    # store. The daemon queues them (a spooled line is a build's output), finds them absent at
    # upload, and cannot tell them from garbage-collected paths: lost, and `wait` exits 13
    # (PathsLost) from then on, as a CI job must fail when a build never reached its cache.
    phantoms: set[str] = set()
    serial = [0]
    started = time.monotonic()

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(st.lists(DS.spool_entries(st.sampled_from(pool), store, canary), min_size=1,
                    max_size=6))
    def one(entries: list[DS.SpoolEntry]) -> None:
        for entry in entries:
            serial[0] += 1
            DS.make_entry(d.spool_dir, entry, serial[0])
            lines = entry.queued_lines(lambda p: S.is_store_path(store, p))
            expected.update(lines)
            phantoms.update(lines.difference(pool))
        check_wait(d, expected, phantoms, entries)

    one()
    # However the draws fell: a never-built path among a torn entry's lines is lost, and
    # `wait` passes again once a person acknowledges it with `drop`.
    phantom = f"{store}/{'0' * 32}-never-built"
    torn = DS.SpoolEntry("torn", "phantom", (phantom, pool[0], "tail"))
    serial[0] += 1
    DS.make_entry(d.spool_dir, torn, serial[0])
    expected.update({phantom, pool[0]})
    phantoms.add(phantom)
    check_wait(d, expected, phantoms, [torn])
    d.cli("drop", "--all")
    check_wait(d, expected - phantoms, set(), [])
    assert d.running, d.log_text()[-3000:]
    status = json.loads(d.cli("status", "--json").stdout)
    aside = sorted(p.name for p in (d.spool_dir / "quarantine").iterdir())
    assert status["spool"]["pending"] == 0
    assert status["spool"]["quarantined"] == len(aside)
    table = d.cli("status").stdout
    assert f"{len(aside)} quarantined" in table, table
    log = d.log_text()
    assert log.count("moved to") == len(aside)
    assert "Traceback" not in log
    assert not Path(canary).exists()
    print(f"measured: {serial[0]} spool entries, {len(aside)} quarantined, "
          f"{len(expected)} distinct paths queued, {len(phantoms)} of them never in the store")
    FIGURES.record(Row("fuzz: spool entries", serial[0], len(expected), 0, 0, 0, 0,
                       time.monotonic() - started))


def _spool_400(d: DaemonHarness, tag: int) -> None:
    store = str(d.config["nix"]["store_dir"])
    for i in range(100):
        paths = [f"{store}/{(tag * 1000 + i * 4 + j):032d}-spooled" for j in range(4)]
        spool.write_spool(d.spool_dir, paths)


def test_wait_never_passes_while_the_spool_holds_files(npq_daemon_factory: Any) -> None:
    d: DaemonHarness = npq_daemon_factory(hook=False,
                                          queue={"batch_wait": 0.2, "batch_size": 200})
    d.start()
    # The race, four times: hooks spool 400 paths, CI runs `wait --socket` at once.
    for tag in range(4):
        _spool_400(d, tag)
        run = wait_socket_only(d, 300)
        assert run.returncode in PASSED, run.stderr
        assert top_level_spool(d) == [], f"run {tag}: wait passed with files in the spool"
    # Ingestion held up (the database locked by another process): wait must not pass, and
    # must still return at its timeout although the daemon's status waits on the database.
    with hold_db_lock(d.state_dir / "queue.sqlite"):
        _spool_400(d, 9)
        started = time.monotonic()
        run = wait_socket_only(d, 3)
        seconds = time.monotonic() - started
        assert run.returncode == 9, (run.returncode, run.stdout, run.stderr)
        assert ("100 spool file(s) not ingested" in run.stderr
                or "did not answer `status` in time" in run.stderr), run.stderr
        assert seconds < 20, f"wait --timeout 3 took {seconds:.0f} s"
        assert len(top_level_spool(d)) == 100
    run = wait_socket_only(d, 300)
    assert run.returncode in PASSED, run.stderr
    assert top_level_spool(d) == []
    assert d.running
