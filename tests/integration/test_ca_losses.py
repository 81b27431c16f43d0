"""No output dropped without a trace (issue 19), with the real hook, daemon and Nix: a
derivation the hook could not name the outputs of is resolved by the daemon, and when that
finally fails it is lost with Nix's reason: `status` shows it, `wait` exits non-zero until it
is dropped. And `push DRV^out` / `push --wait DRV^*` upload a built derivation's outputs with
their realisations."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from nix_push_queue.wire import spool
from tests.fixtures._ca import CaSetup, clear_store, nix_version, realisations
from tests.fixtures.daemon import DaemonHarness

pytestmark = pytest.mark.integration

EXIT_LOST = 13  # errors.PathsLost


def setup(factory: Callable[..., DaemonHarness], **overrides: Any) -> tuple[DaemonHarness,
                                                                            CaSetup]:
    d = factory(**overrides)
    return d, CaSetup.create(d, uuid.uuid4().hex)


def instantiate(ca: CaSetup, attr: str) -> str:
    return ca.d.nix.run(["nix-instantiate", str(ca.d.root / "expr.nix"), "--argstr", "seed",
                         ca.seed, "-A", attr]).stdout.strip()


def test_a_derivation_never_built_is_lost_with_its_reason_until_dropped(
        npq_daemon_factory: Any) -> None:
    """What the hook leaves when it cannot name the outputs (a `DRV^*` line), for a
    derivation whose outputs are not in the store: nothing can be uploaded."""
    d, ca = setup(npq_daemon_factory)
    drv = instantiate(ca, "top")
    spool.write_spool(d.spool_dir, [f"{drv}^*"])
    d.start()
    waited = d.cli("wait", "--timeout", "120", check=False)
    assert waited.returncode == EXIT_LOST, waited.stderr
    # Nix's words: 2.8 and 2.26 "unable to start any build", 2.34 "local builds are
    # disabled" or "1 dependency failed"
    assert f"{drv}^*: outputs not resolved" in waited.stderr
    assert "nix build --json exited 1" in waited.stderr
    stats = d.status()["local"]
    assert (stats["gone"], stats["pending"], stats["done"]) == (1, 0, 0)
    assert f"{drv}^*" in stats["last_error"]
    assert "GONE" in d.cli("status").stdout
    assert "1 dead letter(s) or lost path(s) dropped" in d.cli("drop", f"{drv}^*").stdout
    d.cli("wait", "--timeout", "60")


def test_a_derivation_collected_before_it_is_resolved_is_lost_at_once(
        npq_daemon_factory: Any) -> None:
    """The .drv itself garbage-collected before the daemon reads its `DRV^*` line (no GC
    roots, the daemon down): Nix says so in words that differ per version, and the queue
    records the loss at once instead of retrying it for ever."""
    d, ca = setup(npq_daemon_factory, queue={"retry": {"max_attempts": 1000}})
    drv = instantiate(ca, "top")
    d.nix.run(["nix-store", "--delete", drv])
    spool.write_spool(d.spool_dir, [f"{drv}^*"])
    d.start()
    waited = d.cli("wait", "--timeout", "60", check=False, timeout=120)
    assert waited.returncode == EXIT_LOST, waited.stderr
    stats = d.status()["local"]
    assert (stats["gone"], stats["pending"]) == (1, 0), stats
    assert "(after 1 attempt(s))" in d.log_text()
    print(f"\nNix {nix_version(d)}: {stats['last_error'][:200]}")


def test_ca_outputs_collected_before_the_daemon_resolves_them_are_reported(
        npq_daemon_factory: Any) -> None:
    """The daemon down, a CA build, then a garbage collection. Where the hook could not name
    (or root) the outputs (Nix 2.8: empty OUT_PATHS, and nix-store cannot name floating CA
    outputs) they are collected and reported lost; where Nix named them (2.8.1+), the hook
    rooted them and everything arrives."""
    d, ca = setup(npq_daemon_factory)
    ca.nix_build(("top",))
    named = d.nix.run(["nix", "--version"]).stdout.split()[-1] != "2.8.0"
    spooled = [line for f in d.spool_dir.glob("*.spool") for line in f.read_text().split()]
    assert any(line.endswith("^*") for line in spooled)
    d.nix.run(["nix-collect-garbage"])
    d.start()
    waited = d.cli("wait", "--timeout", "180", check=False)
    stats = d.status()["local"]
    if named:
        assert waited.returncode == 0, waited.stderr
        assert stats["gone"] == 0 and stats["done"] >= 6, stats
        print(f"\nNix {nix_version(d)}: named and rooted by the hook, nothing lost; "
              f"realisations in the cache: {len(realisations(d.cache_dir))}")
        return
    assert waited.returncode == EXIT_LOST, waited.stderr
    assert stats["gone"] >= 1 and "outputs not resolved" in stats["last_error"]
    print(f"\nNix {nix_version(d)}: {stats['gone']} derivation(s) lost and reported: "
          f"{stats['last_error'][:200]}")


def test_push_of_a_derivation_uploads_its_realisations(npq_daemon_factory: Any) -> None:
    d, ca = setup(npq_daemon_factory, hook=False)
    d.start()
    ca.nix_build(("top",))  # no hook: nothing queued
    base = instantiate(ca, "base")
    top = instantiate(ca, "top")
    unbuilt = instantiate(ca, "buildOnly")
    refused = d.cli("push", f"{unbuilt}^*", check=False)
    assert refused.returncode != 0 and "push never builds" in refused.stderr
    pushed = d.cli("push", "--wait", "--timeout", "120", f"{base}!out,lib", f"{top}^*")
    assert "path(s) on every target" in pushed.stdout
    ours = realisations(d.cache_dir)
    assert any(name.endswith("!lib.doi") for name in ours), ours
    # base^doc was not asked for: no realisation of it (Nix 2.8 copies every output of a
    # derivation, having no way to name some of them)
    assert any(name.endswith("!doc.doi") for name in ours) == (nix_version(d) < (2, 13))
    want = ca.nix_build(("top",)).stdout.split()
    clear_store(d)
    fetched = ca.fetch(("top",), force_http=True)
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    assert fetched.stdout.split() == want
