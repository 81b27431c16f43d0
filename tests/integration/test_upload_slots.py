"""Upload slots against the real daemon and the real `nix copy`: with `queue.workers` 8, every
push runs as many `nix copy` at once as it can use, up to 8, burst after burst (issue 22: the
daemon leaked slots on short queues and fell to 2 at once).

Concurrency is counted by a wrapper around the real `nix` (the daemon's `nix.nix_bin_dir`):
each `nix copy` leaves a marker file while it runs and logs how many markers it saw at its
start; it also holds its slot a second longer, as a slow link would, so uploads overlap."""

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
  *" copy "*)
    touch {running}/$$
    ls {running} | wc -l >> {log}
    sleep 1
    {real} "$@"; rc=$?
    rm -f {running}/$$
    exit $rc ;;
esac
exec {real} "$@"
"""


def counting_nix(root: Path) -> tuple[Path, Path]:
    """A bin dir whose `nix` counts concurrent copies; the other Nix programs are the real
    ones. Returns (bin dir, log of counts)."""
    real = Path(shutil.which("nix") or "/usr/bin/nix")
    bindir, running, log = root / "bin", root / "running", root / "copies.log"
    bindir.mkdir()
    running.mkdir()
    log.touch()
    for program in real.parent.glob("nix*"):
        (bindir / program.name).symlink_to(program)
    (bindir / "nix").unlink()
    (bindir / "nix").write_text(WRAPPER.format(running=running, log=log, real=real), "utf-8")
    (bindir / "nix").chmod(0o755)
    return bindir, log


def peak_since(log: Path, seen: int) -> tuple[int, int]:
    counts = [int(line) for line in log.read_text("utf-8").split()]
    return max(counts[seen:], default=0), len(counts)


def test_workers_8_stay_8_after_short_pushes(npq_daemon_factory: Factory,
                                             tmp_path: Path) -> None:
    bindir, log = counting_nix(tmp_path)
    d = npq_daemon_factory(hook=False, nix={"nix_bin_dir": str(bindir)},
                           queue={"workers": 8, "batch_size": 32, "batch_wait": 0})
    nonce = uuid.uuid4().hex
    bursts = {n: d.build_many(f"slots{n}", n, nonce) for n in (9, 6, 4, 256)}
    d.start()
    peaks, seen = [], 0
    for paths in bursts.values():
        d.cli("push", *map(str, paths))
        d.wait_drained(timeout=600)
        peak, seen = peak_since(log, seen)
        peaks.append(peak)
    assert all(d.narinfo(p).exists() for paths in bursts.values() for p in paths)
    print(f"measured: workers 8, pushes of 9/6/4/256 paths: peak concurrent nix copy {peaks}")
    # 9 paths over 8 slots, then 6 and 4 (one path each), then full batches of 32 on 8 slots
    assert peaks == [8, 6, 4, 8]


@pytest.mark.soak
def test_peak_concurrency_over_a_long_run(npq_daemon_factory: Factory,
                                          tmp_path: Path) -> None:
    """The figure for issue 22's note: 30 pushes of 1 to 80 paths (seeded), one after the
    other, workers 8. Each burst must reach as many concurrent `nix copy` as it can use (a
    full batch of 32 is one `nix copy`; the remainder is spread over the idle slots), never
    more than 8: a leak would show as a falling peak."""
    import random

    workers, bursts = 8, 30
    rand = random.Random(22)
    sizes = [rand.randint(1, 80) for _ in range(bursts)]
    bindir, log = counting_nix(tmp_path)
    d = npq_daemon_factory(hook=False, nix={"nix_bin_dir": str(bindir)},
                           queue={"workers": workers, "batch_size": 32, "batch_wait": 0})
    nonce = uuid.uuid4().hex
    paths = [p for i in range(0, sum(sizes), 100)  # one nix-build per 100: argv limits
             for p in d.build_many(f"long{i}", min(100, sum(sizes) - i), nonce)]
    d.start()
    peaks, seen, start = [], 0, 0
    for n in sizes:
        d.cli("push", *map(str, paths[start:start + n]))
        start += n
        d.wait_drained(timeout=600)
        peak, seen = peak_since(log, seen)
        peaks.append(peak)
    print(f"measured: workers {workers}, {bursts} pushes of {sizes} paths: peak concurrent "
          f"nix copy per push {peaks}; overall max {max(peaks)}, copies {seen}")
    # Full batches of 32 take one slot each; the rest is spread over the idle slots.
    assert peaks == [min(workers, n // 32 + n % 32) for n in sizes]
