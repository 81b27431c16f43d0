"""Faults with the real daemon, real Nix and real caches: daemon down, kill -9, cache down,
a path that can never be uploaded, SIGTERM mid-upload."""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from nix_push_queue.wire.spool import write_spool
from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.nginx import NginxCache

pytestmark = pytest.mark.integration

Factory = Callable[..., DaemonHarness]


def wait_for(predicate: Callable[[], bool], timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_daemon_down_during_builds_paths_spooled_then_uploaded(
        npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory()
    nonce = uuid.uuid4().hex
    # No daemon: every build still succeeds (the hook exits 0) and spools its outputs.
    paths = d.build_many("offline", 5, nonce)
    assert len(paths) == 5
    spooled = sorted(d.spool_dir.glob("*.spool"))
    assert len(spooled) == 5
    lines = {line for f in spooled for line in f.read_text().split()}
    # each output, and its derivation (`DRV^*`) so its realisations travel too
    assert {line for line in lines if not line.endswith(".drv^*")} == {str(p) for p in paths}
    assert len(lines) == 10
    d.start()
    d.wait_drained(timeout=120)
    assert not list(d.spool_dir.glob("*.spool"))
    for path in paths:
        d.assert_signed(path)
    d.assert_substitutable(paths[0])
    # A hook that timed out while the daemon runs: its spool file is picked up by polling.
    extra = d.root / "late.txt"
    extra.write_text(nonce)
    added = Path(d.nix.run(["nix-store", "--add", str(extra)]).stdout.strip())
    write_spool(d.spool_dir, [str(added)])
    wait_for(lambda: d.narinfo(added).exists(), timeout=60, what="the late spool file")
    assert not list(d.spool_dir.glob("*.spool"))


def test_kill_9_during_uploads_loses_nothing(npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(queue={"workers": 1, "batch_size": 3, "batch_wait": 0})
    nonce = uuid.uuid4().hex
    paths = d.build_many("crash", 60, nonce)  # spooled: the daemon is not running yet
    rng = random.Random(nonce)
    kills: list[int] = []
    for _ in range(3):
        d.start()
        # kill at a random moment while uploads are under way
        goal = min(rng.randint(5, 15) + (kills[-1] if kills else 0), len(paths))
        wait_for(lambda: _narinfos(d) >= goal, what="uploads")  # noqa: B023
        time.sleep(rng.uniform(0, 0.3))
        d.kill()
        kills.append(_narinfos(d))
        if kills[-1] >= len(paths):
            break
    states_after_kill = d.rows()
    d.start()
    d.wait_drained(timeout=300)
    rows = d.rows()
    assert set(rows) == {str(p) for p in paths}
    assert {state for state, _ in rows.values()} == {"done"}
    for path in paths:
        assert d.narinfo(path).exists(), path
    d.assert_substitutable(paths[-1])
    print(f"measured: narinfos present at each kill: {kills}; rows inflight at the last "
          f"kill: {sum(1 for s, _ in states_after_kill.values() if s == 'inflight')}")


def _narinfos(d: DaemonHarness) -> int:
    return len(list(d.cache_dir.glob("*.narinfo")))


def test_cache_down_retries_then_succeeds(npq_daemon_factory: Factory,
                                          nginx_cache: NginxCache) -> None:
    d = npq_daemon_factory(cache=(nginx_cache.url, nginx_cache.cache_dir),
                           queue={"retry": {"initial_delay": 0.3, "max_delay": 1,
                                            "max_attempts": 100}})
    # Nix itself retries a failed download 5 times with backoff; one is enough here.
    with d.nix.conf_file.open("a", encoding="utf-8") as conf:
        conf.write("download-attempts = 1\n")
    d.start()
    nginx_cache.stop()
    path = d.build("while-down", uuid.uuid4().hex)
    wait_for(lambda: d.rows().get(str(path), ("", 0))[1] >= 2, what="two failed attempts")
    state, _ = d.rows()[str(path)]
    assert state in ("pending", "inflight")
    assert not d.narinfo(path).exists()
    status = d.status()["local"]
    assert status["last_error"]
    assert "secret" not in status["last_error"].lower() or "<redacted>" in status["last_error"]
    nginx_cache.start()
    d.wait_drained(timeout=120)
    assert d.rows()[str(path)][0] == "done"
    d.assert_signed(path)
    d.assert_substitutable(path)


def test_unuploadable_path_goes_dead_without_holding_up_others(
        npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(queue={"batch_size": 8, "workers": 1,
                                  "retry": {"initial_delay": 0.2, "max_delay": 0.5,
                                            "max_attempts": 3}})
    nonce = uuid.uuid4().hex
    paths = d.build_many("mixed", 6, nonce)
    bad = paths[2]
    # A store path Nix cannot serialise any more: `nix copy` fails for it, every time.
    bad.unlink()
    os.mkfifo(bad)
    d.start()
    proc = d.cli("wait", "--timeout", "120", check=False, timeout=200)
    assert proc.returncode == 10, proc.stderr  # DeadLetters
    assert "dead" in proc.stderr
    rows = d.rows()
    assert rows.pop(str(bad)) == ("dead", 3)
    assert {state for state, _ in rows.values()} == {"done"}
    for path in paths:
        if path != bad:
            d.assert_signed(path)
    assert d.status()["local"]["dead"] == 1
    assert "1 dead letter(s) back to pending" in d.cli("retry").stdout
    wait_for(lambda: d.rows()[str(bad)] == ("dead", 3), what="dead again")
    assert "1 dead letter(s) or lost path(s) dropped" in d.cli("drop", "--target", "local").stdout
    d.wait_drained(timeout=60)
    assert str(bad) not in d.rows()


def test_sigterm_while_uploading_marks_nothing_done_that_was_not_uploaded(
        npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(queue={"workers": 2, "batch_size": 1, "batch_wait": 0})
    # Large incompressible outputs at xz (not the default zstd): each `nix copy` takes
    # seconds, so SIGTERM finds uploads under way.
    d.config["targets"][0]["compression"] = "xz"
    d.write_config()
    d.stop_grace = 0.2
    nonce = uuid.uuid4().hex
    expr = "[ " + " ".join(
        f'(builtins.derivation {{ name = "big-{i}"; system = builtins.currentSystem; '
        f'builder = "/bin/sh"; args = [ "-c" "echo {nonce} > $out; '
        f'/usr/bin/head -c 4000000 /dev/urandom >> $out" ]; }})' for i in range(3)) + " ]"
    paths = d.nix.build_expr(expr, timeout=600)
    d.start()
    wait_for(lambda: any(s == "inflight" for s, _ in d.rows().values()), what="an upload")
    started = time.monotonic()
    assert d.stop(signal.SIGTERM, timeout=120) == 0
    stop_seconds = time.monotonic() - started
    rows = d.rows()
    done = {p for p, (s, _) in rows.items() if s == "done"}
    assert {s for s, _ in rows.values()} <= {"done", "pending"}  # nothing left inflight
    assert all(a == 0 for _, a in rows.values())  # a stop is not a failed attempt
    assert done != set(rows), "every upload finished before SIGTERM: the test proved nothing"
    for path in paths:
        assert d.narinfo(path).exists() == (str(path) in done), path
    assert "cancelling" in d.log_text()
    d.stop_grace = 20
    d.start()
    d.wait_drained(timeout=300)
    assert all(d.narinfo(p).exists() for p in paths)
    print(f"measured: SIGTERM to exit {stop_seconds:.2f} s with stop grace 0.2 s; "
          f"{len(done)}/{len(paths)} done at stop")

