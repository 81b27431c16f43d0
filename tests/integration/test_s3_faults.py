"""Faults of the boto3 S3 transport against moto with signature checks on (every Nix of the
matrix): the server cut in the middle of a multipart upload, the daemon killed (SIGKILL) in
the middle of one, and two daemons with two stores pushing overlapping closures to one
bucket at the same time.

After each: no narinfo in the bucket lacks its NAR or a reference's narinfo (the order
NARs, then narinfos by reference layers), and once the fault is over everything lands,
each narinfo exactly once (the bucket is versioned: one version per narinfo key).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from bench.s3host import S3Server

from nix_push_queue.nix.isolated import IsolatedNix, shell_derivation, text_derivation
from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.s3 import bucket_problems, mirror_bucket
from tests.integration.test_s3_boto3 import s3_daemon

pytestmark = pytest.mark.integration
BIG = 40 * 1024 * 1024  # above the multipart threshold (daemon/s3/bucket.py): 3 parts


def big_paths(harness: DaemonHarness, count: int) -> list[Path]:
    """`count` NARs of random bytes (incompressible: the staged NAR is as big), and a small
    path referring to all of them, built in one nix-build; the hook queues each."""
    nonce = secrets.token_hex(8)
    bigs = [shell_derivation(f"npq-big-{i}", f"/usr/bin/head -c {BIG} /dev/urandom > $out",
                             attrs={"nonce": f"{nonce} {i}"}) for i in range(count)]
    top = text_derivation("npq-big-top", nonce, deps=tuple(f"({b})" for b in bigs))
    return harness.nix.build_expr(f"[ {' '.join(f'({b})' for b in bigs)} ({top}) ]",
                                  timeout=600)


def versioned(server: S3Server) -> None:
    server._client("s3").put_bucket_versioning(
        Bucket=server.bucket, VersioningConfiguration={"Status": "Enabled"})


def versions(server: S3Server) -> dict[str, int]:
    s3 = server._client("s3")
    counts: dict[str, int] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=server.bucket):
        for v in page.get("Versions", []):
            counts[v["Key"]] = counts.get(v["Key"], 0) + 1
    return counts


def wait_multipart(server: S3Server, timeout: float = 300) -> None:
    """Until a multipart upload is under way in the bucket (asked of moto directly)."""
    s3 = server._client("s3")
    deadline = time.monotonic() + timeout
    while not s3.list_multipart_uploads(Bucket=server.bucket).get("Uploads"):
        assert time.monotonic() < deadline, "no multipart upload started"
        time.sleep(0.02)


def assert_landed_once(server: S3Server, harness: DaemonHarness, paths: list[Path]) -> None:
    assert bucket_problems(server) == []
    counts = versions(server)
    narinfos = {k: n for k, n in counts.items() if k.endswith(".narinfo")}
    assert set(narinfos) == {f"{p.name[:32]}.narinfo" for p in paths}
    assert set(narinfos.values()) == {1}, narinfos
    mirror_bucket(server, harness.cache_dir)
    harness.assert_substitutable(*paths)


def fault_daemon(factory: Callable[..., DaemonHarness], server: S3Server) -> DaemonHarness:
    return s3_daemon(factory, server, queue={
        "batch_wait": 1.0, "retry": {"initial_delay": 0.5, "max_delay": 2,
                                     "max_attempts": 1000}})


def mid_multipart(server_factory: Callable[..., S3Server],
                  daemon_factory: Callable[..., DaemonHarness]
                  ) -> tuple[S3Server, DaemonHarness, list[Path]]:
    """A versioned bucket behind SigV4, and a daemon uploading two large paths to it: returns
    once a multipart upload is under way."""
    server = server_factory(auth=True)
    versioned(server)
    harness = fault_daemon(daemon_factory, server)
    harness.start()
    paths = big_paths(harness, 2)
    wait_multipart(server)
    return server, harness, paths


def test_server_cut_mid_multipart(s3_server_factory: Callable[..., S3Server],
                                  npq_daemon_factory: Callable[..., DaemonHarness]) -> None:
    server, harness, paths = mid_multipart(s3_server_factory, npq_daemon_factory)
    server.stop()
    # The daemon keeps trying (transient); whatever landed is consistent meanwhile.
    deadline = time.monotonic() + 120
    while not harness.status()["local"]["last_error"]:
        assert time.monotonic() < deadline, harness.log_text()[-3000:]
        time.sleep(0.2)
    state = harness.status()["local"]
    assert state["dead"] == 0 and "cannot reach the S3 endpoint" in state["last_error"], state
    assert bucket_problems(server) == []
    server.start()
    harness.wait_drained(timeout=300)
    assert_landed_once(server, harness, paths)


def test_daemon_killed_mid_multipart(s3_server_factory: Callable[..., S3Server],
                                     npq_daemon_factory: Callable[..., DaemonHarness]) -> None:
    server, harness, paths = mid_multipart(s3_server_factory, npq_daemon_factory)
    harness.kill()
    assert bucket_problems(server) == []
    staged = harness.state_dir / "staging"
    assert [p for p in staged.rglob("*.nar*") if p.is_file()], "nothing was staged"
    harness.start()
    harness.wait_drained(timeout=300)
    assert "left by a previous run" in harness.log_text()
    assert not [p for p in staged.rglob("*") if p.is_file()]
    assert_landed_once(server, harness, paths)


def test_two_daemons_overlapping_closures(nix: IsolatedNix,
                                          s3_server_factory: Callable[..., S3Server],
                                          npq_daemon_factory: Callable[..., DaemonHarness]
                                          ) -> None:
    """Two daemons (two queues, two staging areas) push closures sharing 20 paths, at once.
    They share the test's Nix store: two isolated stores have different store directories,
    so they could never hold the same store paths."""
    server = s3_server_factory(auth=True)
    first, second = (s3_daemon(npq_daemon_factory, server, hook=False) for _ in range(2))
    # One signing key, as the builders of one cache have.
    second.config["targets"][0]["secret_key_file"] = str(first.secret_key)
    second.config["targets"][0]["public_key"] = second.public_key = first.public_key
    shared = [text_derivation(f"npq-shared-{i}", f"shared {i} {secrets.token_hex(4)}")
              for i in range(20)]
    own = {name: [text_derivation(f"npq-{name}-{i}", f"{name} {i}",
                                  deps=tuple(f"({d})" for d in shared[i % 4::4]))
                  for i in range(12)] for name in "ab"}
    built = {name: nix.build_expr("[ " + " ".join(f"({e})" for e in exprs) + " ]")
             for name, exprs in own.items()}
    for harness in (first, second):
        harness.start()
    pushes = [threading.Thread(target=h.cli, args=("push", *map(str, built[n])))
              for n, h in (("a", first), ("b", second))]
    for thread in pushes:
        thread.start()
    for thread in pushes:
        thread.join()
    for harness in (first, second):
        harness.wait_drained(timeout=300)
    assert bucket_problems(server) == []
    objects = server.keys()
    narinfos = {k for k in objects if k.endswith(".narinfo")}
    assert len(narinfos) == 12 + 12 + 20, sorted(narinfos)
    mirror_bucket(server, first.cache_dir)
    first.assert_substitutable(*built["a"], *built["b"])
