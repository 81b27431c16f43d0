"""The real hook, run by real Nix as its post-build-hook, with the daemon absent or faked.

(The real daemon's end-to-end tests are B2's, in test_daemon_*.py.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nix_push_queue.client import hook
from nix_push_queue.nix.isolated import IsolatedNix, text_derivation
from tests.fixtures.fake_daemon import FakeDaemon, Mode

pytestmark = pytest.mark.integration

HOOK = Path(sys.executable).parent / "nix-push-queue"

MULTI_OUTPUT = """builtins.derivation {
  name = "multi-%s"; system = builtins.currentSystem; builder = "/bin/sh";
  outputs = [ "out" "dev" ];
  args = [ "-c" "echo out > $out; echo dev > $dev" ];
}"""


def install_hook(nix: IsolatedNix, tmp_path: Path, socket: Path, timeout: float) -> Path:
    """nix.conf's post-build-hook -> a /bin/sh wrapper (as the generator writes one) that
    also records what Nix passed and how long the hook took."""
    record = tmp_path / "hook-runs.jsonl"
    wrapper = tmp_path / "post-build-hook"
    argv = [str(HOOK), "hook", "--socket", str(socket), "--spool-dir", str(tmp_path / "spool"),
            "--store-dir", str(nix.store_dir), "--state-dir", str(nix.state_dir),
            "--timeout", str(timeout)]
    wrapper.write_text(f"""#!/bin/sh
start=$(date +%s.%N)
{shlex.join(argv)}
rc=$?
end=$(date +%s.%N)
printf '{{"out_paths": "%s", "drv_path": "%s", "rc": %s, "start": %s, "end": %s}}\\n' \\
  "$OUT_PATHS" "$DRV_PATH" "$rc" "$start" "$end" >> {shlex.quote(str(record))}
exit $rc
""")
    wrapper.chmod(0o755)
    with nix.conf_file.open("a") as conf:
        conf.write(f"post-build-hook = {wrapper}\n")
    return record


def runs(record: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def spooled(tmp_path: Path, *, derivations: bool = False) -> list[str]:
    """The store paths spooled (with `derivations`: the `DRV^*` lines instead)."""
    return sorted(line for f in (tmp_path / "spool").glob("*.spool")
                  for line in f.read_text().splitlines() if line.endswith("^*") == derivations)


def build_some(nix: IsolatedNix, tag: str) -> list[str]:
    outs = nix.build_expr(text_derivation(f"single-{tag}", f"content {tag} {time.time_ns()}"))
    outs += nix.build_expr(MULTI_OUTPUT % tag)
    outs += nix.build_expr(f"({MULTI_OUTPUT % tag}).dev")  # built already: no new hook run
    return sorted(str(p) for p in outs)


def test_daemon_absent_builds_succeed_and_paths_are_spooled(nix: IsolatedNix,
                                                            tmp_path: Path) -> None:
    record = install_hook(nix, tmp_path, tmp_path / "absent.sock", timeout=2)
    built = build_some(nix, "absent")
    assert len(built) == 3  # single output + out and dev
    seen = runs(record)
    assert [r["rc"] for r in seen] == [0, 0]
    # Nix 2.8.0 passes an empty OUT_PATHS (fixed in 2.8.1): the hook must not depend on it
    print("OUT_PATHS as passed by Nix:", [r["out_paths"] for r in seen])
    assert all(str(r["drv_path"]).endswith(".drv") for r in seen)
    assert spooled(tmp_path) == built
    # and each build's derivation, for the daemon to upload the outputs as DRV^* (issue 19)
    assert spooled(tmp_path, derivations=True) == sorted(f"{r['drv_path']}^*" for r in seen)
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in (tmp_path / "spool").iterdir())


def test_daemon_not_answering_hook_returns_within_timeout(
        nix: IsolatedNix, tmp_path: Path, fake_daemon: Callable[[Mode], FakeDaemon]) -> None:
    daemon = fake_daemon("silent")
    record = install_hook(nix, tmp_path, daemon.path, timeout=1)
    built = build_some(nix, "silent")
    seen = runs(record)
    durations = [float(r["end"]) - float(r["start"]) for r in seen]  # type: ignore[arg-type]
    print(f"hook wall time with a silent daemon (timeout 1 s): {durations}")
    assert [r["rc"] for r in seen] == [0, 0]
    assert max(durations) < 30  # bounded (timeout 1 s); generous for a loaded 2-core machine
    assert spooled(tmp_path) == built


def test_acking_daemon_receives_the_paths(nix: IsolatedNix, tmp_path: Path,
                                          fake_daemon: Callable[[Mode], FakeDaemon]) -> None:
    daemon = fake_daemon("ack")
    record = install_hook(nix, tmp_path, daemon.path, timeout=5)
    built = build_some(nix, "ack")
    assert [r["rc"] for r in runs(record)] == [0, 0]
    assert sorted(p for p in daemon.paths() if not p.endswith("^*")) == built
    assert sorted(p for p in daemon.paths() if p.endswith("^*")) == sorted(
        f"{r['drv_path']}^*" for r in runs(record))
    assert {r.source for r in daemon.requests} == {"hook"}  # type: ignore[union-attr]
    assert not (tmp_path / "spool").exists()


def test_nix_store_query_agrees_with_the_drv_file(nix: IsolatedNix) -> None:
    """The two ways of resolving DRV_PATH (used when OUT_PATHS is empty) agree."""
    (out,) = nix.build_expr(MULTI_OUTPUT % "query")[:1]
    drv = nix.run(["nix-store", "--query", "--deriver", str(out)]).stdout.strip()
    from_file = hook.drv_outputs(drv)
    queried = hook.query_outputs(drv, None, time.monotonic() + 60, nix.env())
    assert from_file is not None and len(from_file) == 2
    assert sorted(from_file) == sorted(queried)
    nix_store = shutil.which("nix-store")
    assert nix_store is not None
    bin_dir = os.path.dirname(nix_store)
    assert sorted(hook.query_outputs(drv, bin_dir, time.monotonic() + 60, nix.env())) == sorted(
        queried)


def test_full_disk_hook_still_exits_zero_and_says_why(tmp_path: Path) -> None:
    """A real full file system (a tiny tmpfs) under the spool, and no daemon."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(spool_dir)],
                   check=True)
    try:
        filler = spool_dir / "filler"
        with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"x" * 4096)
        path = "/nix/store/" + "a" * 32 + "-p"
        proc = subprocess.run(
            [str(HOOK), "hook", "--socket", str(tmp_path / "none.sock"), "--spool-dir",
             str(spool_dir), "--store-dir", "/nix/store", "--timeout", "2", "--no-gc-roots"],
            env={"PATH": os.environ["PATH"], "OUT_PATHS": path},
            capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0
        assert "disk is full" in proc.stderr and f"not queued: {path}" in proc.stderr
        assert proc.stderr.startswith("nix-push-queue hook: ")
        assert sorted(p.name for p in spool_dir.iterdir()) == ["filler"]  # no temp file left
    finally:
        subprocess.run(["umount", str(spool_dir)], check=True)
