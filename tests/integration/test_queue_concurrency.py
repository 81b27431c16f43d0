"""Many producers at once against the real daemon: every path queued exactly once and
uploaded exactly once, whether its hook was answered or fell back to the spool."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Callable

import pytest

from tests.fixtures.daemon import NPQ, DaemonHarness

pytestmark = pytest.mark.integration

Factory = Callable[..., DaemonHarness]


def test_50_hooks_at_once_each_path_queued_once(npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(hook=False)
    paths = d.build_many("burst", 50, uuid.uuid4().hex)
    shared = paths[0]
    d.start()
    q = d.config["queue"]
    argv = [NPQ, "hook", "--socket", q["socket"], "--spool-dir", q["spool_dir"],
            "--store-dir", d.config["nix"]["store_dir"], "--state-dir", str(d.nix.state_dir),
            "--timeout", "10"]
    started = time.monotonic()
    hooks = []
    for path in paths:
        env = d.env()
        env["OUT_PATHS"] = f"{path} {shared}"  # every hook also reports one shared path
        env["DRV_PATH"] = ""
        hooks.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
    results = [(h.wait(timeout=120), h.stderr.read().decode() if h.stderr else "")
               for h in hooks]
    hooks_done = time.monotonic()
    for h in hooks:
        for stream in (h.stdout, h.stderr):
            if stream is not None:
                stream.close()
    assert [code for code, _ in results] == [0] * 50
    spooled = sum(1 for _, err in results if "spool" in err)
    d.wait_drained(timeout=300)
    drained = time.monotonic()
    rows = d.rows()
    assert sorted(rows) == sorted(str(p) for p in paths)
    assert {state for state, _ in rows.values()} == {"done"}
    uploaded = sum(int(n) for n in re.findall(r"uploaded (\d+) path\(s\)", d.log_text()))
    assert uploaded == 50  # nothing uploaded twice
    for path in paths:
        d.assert_signed(path)
    print(f"measured: 50 concurrent hooks finished in {hooks_done - started:.2f} s "
          f"({spooled} fell back to the spool); queue drained {drained - hooks_done:.2f} s "
          "later")


def test_drain_rate_of_200_small_paths(npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(hook=False)
    paths = d.build_many("drain", 200, uuid.uuid4().hex)
    d.start()
    started = time.monotonic()
    d.cli("push", *map(str, paths))
    d.wait_drained(timeout=600)
    seconds = time.monotonic() - started
    assert all(d.narinfo(p).exists() for p in paths)
    print(f"measured: 200 small paths to file:// in {seconds:.2f} s "
          f"({200 / seconds:.0f} paths/s, batch_size 32, 2 workers)")
