"""Uploads yield to builds without systemd too (nix/priority.py), seen from the real `nix
copy` the real daemon starts: nice 19 and, while builds run (a hook's entry came in), only
the CPUs `queue.reserved_cpus` leaves it; a push with no build in sight has every CPU.

The daemon's `nix` is a wrapper (its `nix.nix_bin_dir`) that records what the kernel says of
it, then execs the real one: it is the process `nix copy` becomes, so it has what Nix has."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures._wrapped_nix import wrapped_nix
from tests.fixtures.daemon import DaemonHarness

pytestmark = pytest.mark.integration

Factory = Callable[..., DaemonHarness]

# What the kernel says of the process `nix copy` becomes (the wrapper execs it).
SNIPPET = """case " $* " in
  *" copy "*)
    nice=$(cut -d' ' -f19 /proc/$$/stat)
    group=$(sed -n 's/.*nice //p' /proc/$$/autogroup 2>/dev/null || echo none)
    cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/$$/status)
    echo "$nice ${{group:-none}} $cpus" >> {log} ;;
esac"""


def recording_nix(root: Path) -> tuple[Path, Path]:
    log = root / "copies.log"
    return wrapped_nix(root, SNIPPET.format(log=log)), log


def cpu_list(cpus: list[int]) -> str:
    """/proc's Cpus_allowed_list for a set of CPUs: ranges joined by commas."""
    runs: list[list[int]] = []
    for cpu in cpus:
        if runs and cpu == runs[-1][-1] + 1:
            runs[-1].append(cpu)
        else:
            runs.append([cpu])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


@pytest.mark.parametrize("reserved", [None, 0])
def test_nix_copy_runs_low_and_off_the_reserved_cpus(npq_daemon_factory: Factory,
                                                     tmp_path: Path,
                                                     reserved: int | None) -> None:
    """None: the schema's default (1 CPU left to builds). A push of built paths while no
    build runs, then a build through the real post-build-hook."""
    bindir, log = recording_nix(tmp_path)
    queue = {} if reserved is None else {"reserved_cpus": reserved}
    d = npq_daemon_factory(nix={"nix_bin_dir": str(bindir)}, queue=queue)
    nonce = uuid.uuid4().hex
    d.start()
    # Added, not built: no hook runs for it, so no build is in sight.
    (tmp_path / "prio-pushed").write_text(nonce, "utf-8")
    pushed = [Path(p) for p in
              d.nix.run(["nix-store", "--add", str(tmp_path / "prio-pushed")]).stdout.split()]
    d.cli("push", *map(str, pushed))
    d.wait_drained(timeout=300)
    quiet = log.read_text("utf-8").splitlines()
    built = d.build("prio-built", nonce)
    d.wait_drained(timeout=300)
    busy = log.read_text("utf-8").splitlines()[len(quiet):]
    assert d.narinfo(built).exists() and all(d.narinfo(p).exists() for p in pushed)
    allowed = sorted(os.sched_getaffinity(0))
    left = 1 if reserved is None else reserved
    narrow = allowed[left:] if left and len(allowed) > left else allowed
    assert quiet and busy, f"nix copy runs seen: {quiet} then {busy}"
    assert d.proc is not None
    status = Path(f"/proc/{d.proc.pid}/status").read_text("utf-8")
    assert f"Cpus_allowed_list:\t{cpu_list(narrow)}\n" in status, \
        "the daemon's own threads run on the CPUs not left to builds"
    for records, want in ((quiet, allowed), (busy, narrow)):
        for record in records:
            nice, group, cpus = record.split()
            assert nice == "19", record
            # Its session's group is not lowered: that starves uploads (nix/priority.py).
            assert group in ("0", "none"), record  # "none": this kernel has no autogroups
            assert cpus == cpu_list(want), f"{record}: want CPUs {want} of {allowed}"
    print(f"measured: nix copy at nice 19: CPUs "
          f"{quiet[0].split()[2]} for a push, {busy[0].split()[2]} after a build "
          f"(reserved_cpus {left})")
