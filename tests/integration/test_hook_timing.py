"""How long the hook holds up Nix's build loop. Measured and printed (run with -s), never
asserted: the machine is shared and has 2 cores."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.fake_daemon import FakeDaemon, Mode

pytestmark = pytest.mark.integration

RUNS = int(os.environ.get("NPQ_HOOK_TIMING_RUNS", "100"))
HOOK = Path(sys.executable).parent / "nix-push-queue"
H = "0123456789abcdfghijklmnpqrsvwxyz"


def wall_times(argv: list[str], env: dict[str, str],
               before: Callable[[], None] | None = None, runs: int = RUNS) -> list[float]:
    times = []
    for _ in range(runs):
        if before is not None:
            before()  # untimed: e.g. remove the GC root, so each run makes a new one
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=60)
        times.append(time.perf_counter() - started)
    return sorted(times)


def summary(label: str, times: list[float]) -> str:
    p50, p99 = times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
    return f"{label:<44} p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  (n={len(times)})"


def test_hook_wall_time(tmp_path: Path, fake_daemon: Callable[[Mode], FakeDaemon]) -> None:
    store = tmp_path / "store"
    store.mkdir()
    out = f"{store}/{H}-out"
    drv = f"{store}/{'1' * 32}-x.drv"
    Path(drv).write_text(f'Derive([("out","{out}","","")],[],[],"x","/bin/sh",[],[])')
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DRV_PATH": drv}
    daemon = fake_daemon("ack")

    state = tmp_path / "var"
    (state / "gcroots").mkdir(parents=True)
    root = state / "gcroots/nix-push-queue" / Path(out).name

    def hook(socket: Path, roots: bool = True) -> list[str]:
        return [str(HOOK), "hook", "--socket", str(socket), "--spool-dir",
                str(tmp_path / "spool"), "--store-dir", str(store), "--timeout", "5",
                *(["--state-dir", str(state)] if roots else ["--no-gc-roots"])]

    def unroot() -> None:
        root.unlink(missing_ok=True)

    lines = [
        summary("python -c pass (interpreter start)",
                wall_times([sys.executable, "-c", "pass"], base_env)),
        summary("hook, daemon absent (spool write + fsync)",
                wall_times(hook(tmp_path / "absent.sock"), {**base_env, "OUT_PATHS": out},
                           unroot)),
        summary("hook, daemon absent, --no-gc-roots",
                wall_times(hook(tmp_path / "absent.sock", False),
                           {**base_env, "OUT_PATHS": out})),
        summary("hook, acking daemon (GC root made)",
                wall_times(hook(daemon.path), {**base_env, "OUT_PATHS": out}, unroot)),
        summary("hook, acking daemon, --no-gc-roots",
                wall_times(hook(daemon.path, False), {**base_env, "OUT_PATHS": out})),
        summary("hook, acking daemon, OUT_PATHS empty (2.8.0)",
                wall_times(hook(daemon.path), {**base_env, "OUT_PATHS": ""}, unroot)),
    ]
    # With and without the GC root, interleaved so both see the same machine load.
    paired: dict[bool, list[float]] = {True: [], False: []}
    for i in range(RUNS):
        for roots in (True, False) if i % 2 else (False, True):
            paired[roots] += wall_times(hook(daemon.path, roots),
                                        {**base_env, "OUT_PATHS": out}, unroot, runs=1)
            assert root.is_symlink() == roots and (not roots or root.readlink() == Path(out))
    diffs = sorted(a - b for a, b in zip(paired[True], paired[False], strict=True))
    median = diffs[len(diffs) // 2] * 1000
    lines += [summary("interleaved: acking daemon, GC root", sorted(paired[True])),
              summary("interleaved: acking daemon, --no-gc-roots", sorted(paired[False])),
              f"interleaved: median of the paired differences {median:+.2f} ms"]
    print("\n" + "\n".join(lines))
    # Each acked run hands over its output and its derivation (`DRV^*`, so realisations travel).
    assert Counter(daemon.paths()) == {out: 5 * RUNS, f"{drv}^*": 5 * RUNS}
    assert len(list((tmp_path / "spool").glob("*.spool"))) == 2 * RUNS
