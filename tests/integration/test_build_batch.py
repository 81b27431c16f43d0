"""While builds run, their outputs wait `queue.build_batch_wait` for the builds after them:
one `nix build --json` and one `nix copy` serve several builds, rather than one of each per
build beside them (issue 18). Seen from the real daemon's `nix`, a wrapper that logs each
call's subcommand and execs the real one."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.daemon import DaemonHarness

pytestmark = pytest.mark.integration

Factory = Callable[..., DaemonHarness]

WRAPPER = """#!/bin/sh
case " $* " in
  *" copy "*) echo copy >> {log} ;;
  *" build "*) echo build >> {log} ;;
esac
exec {real} "$@"
"""


def recording_nix(root: Path) -> tuple[Path, Path]:
    real = Path(shutil.which("nix") or "/usr/bin/nix")
    bindir, log = root / "bin", root / "calls.log"
    bindir.mkdir()
    for program in real.parent.glob("nix*"):
        (bindir / program.name).symlink_to(program)
    (bindir / "nix").unlink()
    (bindir / "nix").write_text(WRAPPER.format(log=log, real=real), "utf-8")
    (bindir / "nix").chmod(0o755)
    return bindir, log


def calls(log: Path) -> list[str]:
    return log.read_text("utf-8").split() if log.exists() else []


@pytest.mark.parametrize("wait", [10.0, 0.0])
def test_builds_in_a_row_share_one_resolution_and_one_upload(npq_daemon_factory: Factory,
                                                             tmp_path: Path,
                                                             wait: float) -> None:
    """Three builds in a row, each through the real post-build-hook. With a wait longer
    than the three take, one call of each (one worker: a short batch is not spread over
    idle ones); with none, a build after the drain is resolved on its own."""
    bindir, log = recording_nix(tmp_path)
    d = npq_daemon_factory(nix={"nix_bin_dir": str(bindir)},
                           queue={"build_batch_wait": wait, "batch_wait": 2, "workers": 1})
    d.start()
    nonce = uuid.uuid4().hex
    built = [d.build(f"batch-{i}", nonce) for i in range(3)]
    if wait == 0:
        d.wait_drained(timeout=300)  # before the next: nothing left to join
        built.append(d.build("batch-3", nonce))
    d.wait_drained(timeout=300)
    assert all(d.narinfo(p).exists() for p in built)
    seen = calls(log)
    if wait:
        assert (seen.count("build"), seen.count("copy")) == (1, 1), seen
    else:
        assert seen.count("build") >= 2, seen  # the last build was resolved on its own
    print(f"measured: {len(built)} builds, build_batch_wait {wait}: "
          f"{seen.count('build')} `nix build --json`, {seen.count('copy')} `nix copy`")
