"""Content-addressed derivations through the real hook and daemon, from Nix's own functional
tests' point of view (issue 19; shapes and steps in tests/fixtures/ca.py): built with the
generated hook, the store cleared, everything fetched back with local builds off from the
cache's realisations, then again from the local realisation cache once the cache's are
removed (as Nix's ca/substitute.sh does); the same for an input-addressed closure.

Measured per Nix and printed (`-s`): the realisations the queue put in the cache against what
Nix's own test hook (`nix copy --to REF "$DRV_PATH^*"`) put in a reference cache.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures._ca import (
    CA_ALL,
    CA_ATTRS,
    IA_ALL,
    IA_ASKED,
    CaSetup,
    clear_store,
    contents,
    narinfos,
    nix_version,
    realisations,
)
from tests.fixtures.daemon import DaemonHarness

pytestmark = pytest.mark.integration


def started(factory: Callable[..., DaemonHarness]) -> tuple[DaemonHarness, CaSetup]:
    d = factory()
    setup = CaSetup.create(d, uuid.uuid4().hex)
    d.start()
    return d, setup


def test_ca_closure_is_pushed_with_its_realisations_and_fetched_back(
        npq_daemon_factory: Any) -> None:
    d, ca = started(npq_daemon_factory)
    version = nix_version(d)
    ca.nix_build(CA_ATTRS)
    d.wait_drained(timeout=180)
    ours, ref = realisations(d.cache_dir), realisations(ca.ref_dir)
    print(f"\nNix {version}: realisations: queue {len(ours)}, nix copy DRV^* {len(ref)}; "
          f"narinfos: queue {len(narinfos(d.cache_dir))}, reference {len(narinfos(ca.ref_dir))}")
    print(f"hook runs: {ca.hook_runs()}")
    assert ours == ref
    assert set(narinfos(ca.ref_dir)) <= set(narinfos(d.cache_dir))
    wanted = contents(ca.nix_build(CA_ALL).stdout.split())
    clear_store(d)
    fetched = ca.fetch(CA_ALL, force_http=True)
    print("fetch -j0 from the cache's realisations:", fetched.returncode,
          fetched.stderr[-1500:])
    assert fetched.returncode == 0
    assert contents(fetched.stdout.split()) == wanted
    clear_store(d)
    for doi in (d.cache_dir / "realisations").iterdir():
        doi.unlink()
    again = ca.fetch(CA_ALL, force_http=True)
    print("fetch -j0 from the local realisation cache:", again.returncode, again.stderr[-1500:])
    assert again.returncode == 0
    assert contents(again.stdout.split()) == wanted
    # The control: with neither the cache's realisations nor the local realisation cache,
    # nothing can be substituted with local builds off: realisations are what made it work.
    clear_store(d)
    shutil.rmtree(d.nix.root / "cache")
    (d.nix.root / "cache").mkdir()
    assert ca.fetch(CA_ALL, force_http=True).returncode != 0


def test_input_addressed_closure_is_fetched_back(npq_daemon_factory: Any) -> None:
    d, ca = started(npq_daemon_factory)
    ca.nix_build(IA_ASKED)
    d.wait_drained(timeout=180)
    everything = ca.nix_build(IA_ALL).stdout.split()  # built already: no new hook run
    content = contents(everything)
    clear_store(d)
    fetched = ca.fetch(IA_ALL)
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    assert contents(fetched.stdout.split()) == content


def test_the_s3_staging_path_carries_the_realisations(
        s3_server_factory: Callable[..., Any], npq_daemon_factory: Any) -> None:
    """The boto3 transport (daemon/s3/): Nix stages `DRV^out` into a file:// cache, its
    `realisations/` go to the bucket with the NARs and narinfos."""
    from tests.fixtures.s3 import mirror_bucket
    from tests.integration.test_s3_boto3 import s3_daemon

    server = s3_server_factory(auth=True)
    d = s3_daemon(npq_daemon_factory, server)
    d.config["targets"][0]["transport"] = "boto3"
    ca = CaSetup.create(d, uuid.uuid4().hex)
    d.start()
    ca.nix_build(CA_ATTRS)
    d.wait_drained(timeout=180)
    keys = mirror_bucket(server, d.cache_dir)
    ours, ref = realisations(d.cache_dir), realisations(ca.ref_dir)
    print(f"\nNix {nix_version(d)}, S3 through boto3: realisations in the bucket "
          f"{len(ours)}, nix copy DRV^* {len(ref)}")
    assert ours == ref and all(f"realisations/{r}" in keys for r in ref)
    wanted = contents(ca.nix_build(CA_ALL).stdout.split())
    clear_store(d)
    fetched = ca.fetch(CA_ALL, force_http=True)
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    assert contents(fetched.stdout.split()) == wanted
