"""Builds in a burst wait `queue.build_batch_wait` for the builds after them: one `nix build
--json` and one `nix copy` serve several builds, rather than one of each per build beside
them (issue 18); a lone build does not wait. Seen from the real daemon's `nix`, a wrapper
that logs each call's subcommand and execs the real one."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures._wrapped_nix import wrapped_nix
from tests.fixtures.daemon import DaemonHarness

pytestmark = pytest.mark.integration

Factory = Callable[..., DaemonHarness]

# Each call's subcommand, in the order they start.
SNIPPET = """case " $* " in
  *" copy "*) echo copy >> {log} ;;
  *" build "*) echo build >> {log} ;;
esac"""


def recording_nix(root: Path) -> tuple[Path, Path]:
    log = root / "calls.log"
    return wrapped_nix(root, SNIPPET.format(log=log)), log


def calls(log: Path) -> list[str]:
    return log.read_text("utf-8").split() if log.exists() else []


@pytest.mark.parametrize("wait", [10.0, 0.0])
def test_a_burst_of_builds_shares_one_resolution_and_one_upload(npq_daemon_factory: Factory,
                                                               tmp_path: Path,
                                                               wait: float) -> None:
    """A lone build is resolved and uploaded at once, whatever the wait. Then three builds
    in a row, each through the real post-build-hook: with a wait longer than they take, one
    `nix build --json` and one `nix copy` serve all three (one worker: a short batch is not
    spread over idle ones); with none, the first is resolved on its own as it comes."""
    bindir, log = recording_nix(tmp_path)
    d = npq_daemon_factory(nix={"nix_bin_dir": str(bindir)},
                           queue={"build_batch_wait": wait, "batch_wait": 2, "workers": 1})
    d.start()
    nonce = uuid.uuid4().hex
    lone = d.build("lone", nonce)
    started = time.monotonic()
    d.wait_drained(timeout=300)
    lone_seconds = time.monotonic() - started
    assert d.narinfo(lone).exists()
    assert calls(log).count("build") == 1
    if wait:
        assert lone_seconds < wait - 2, f"a lone build waited {lone_seconds:.1f} s"
    before = len(calls(log))
    burst = [d.build(f"batch-{i}", nonce) for i in range(3)]
    d.wait_drained(timeout=300)
    assert all(d.narinfo(p).exists() for p in burst)
    seen = calls(log)[before:]
    if wait:
        assert (seen.count("build"), seen.count("copy")) == (1, 1), seen
    else:
        assert seen.count("build") >= 2, seen
    print(f"measured: build_batch_wait {wait}: a lone build drained in {lone_seconds:.1f} s; "
          f"3 builds in a row: {seen.count('build')} `nix build --json`, "
          f"{seen.count('copy')} `nix copy`")
