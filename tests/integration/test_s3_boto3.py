"""The boto3 S3 transport on every Nix of the matrix (2.8, 2.26, 2.34), against moto's S3
server with signature checks on (tests/fixtures/s3.py, bench/s3host.py `auth=True`): an
uploader key issued through moto's IAM API, anonymous requests refused.

Nix stages a signed `file://` cache, boto3 uploads it with signed requests. The bucket is
read back with the uploader key (a bucket that checks signatures serves no anonymous
reader, and Debian's Nix cannot sign): mirrored to a `file://` cache that Nix substitutes
from with signatures required.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bench.s3host import S3Server, free_port

from nix_push_queue.nix import stores
from nix_push_queue.nix.isolated import IsolatedNix
from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.s3 import bucket_problems, mirror_bucket

pytestmark = pytest.mark.integration


def s3_daemon(factory: Callable[..., DaemonHarness], server: S3Server, *,
              credentials: tuple[str, str] | bool | None = None, **overrides: Any
              ) -> DaemonHarness:
    """A daemon whose one target is the bucket, with an AWS credentials file holding
    `credentials` (default: the uploader key; False: no file); `harness.cache_url` is the
    local mirror."""
    harness = factory(cache=(server.url(), Path("/nonexistent")), **overrides)
    mirror = harness.root / "mirror"
    harness.cache_dir, harness.cache_url = mirror, f"file://{mirror}"
    creds = harness.root / "aws-credentials"
    if credentials is not False:
        key, secret = credentials if isinstance(credentials, tuple) else server.credentials
        creds.write_text(f"[default]\naws_access_key_id = {key}\n"
                         f"aws_secret_access_key = {secret}\n", encoding="utf-8")
        creds.chmod(0o600)
        harness.config["targets"][0]["credentials_file"] = str(creds)
    # Only what the config names: no ~/.aws of the host, no instance metadata lookups.
    harness.extra_env.update(AWS_EC2_METADATA_DISABLED="true", HOME=str(harness.root),
                             AWS_CONFIG_FILE=str(harness.root / "no-aws-config"),
                             AWS_SHARED_CREDENTIALS_FILE=str(harness.root / "no-aws-creds"))
    return harness


def test_signed_upload_substitutes_back(s3_server_factory: Callable[..., S3Server],
                                        npq_daemon_factory: Callable[..., DaemonHarness]
                                        ) -> None:
    server = s3_server_factory(auth=True)
    port = free_port()
    harness = s3_daemon(npq_daemon_factory, server,
                        metrics={"listen": f"127.0.0.1:{port}"})
    harness.start()
    dep = harness.build("npq-s3-dep", "the dependency")
    top = harness.build("npq-s3-top", "refers to it", deps=(str(dep),))
    harness.wait_drained(timeout=120)
    log = harness.log_text()
    support = stores.s3_support(None, harness.nix.env())
    assert ("transport nix (auto:" if support.signed else "transport boto3 (auto:") in log, log
    assert bucket_problems(server) == []
    keys = mirror_bucket(server, harness.cache_dir)
    assert {f"{p.name[:32]}.narinfo" for p in (dep, top)} <= set(keys)
    assert "nix-cache-info" in keys
    harness.assert_signed(top)
    harness.assert_substitutable(top, dep)
    # Every staged NAR went once it was up; the batch's directory too.
    staging = harness.state_dir / "staging"
    assert not [p for p in staging.rglob("*") if p.is_file()]
    # `push` of what is done asks the bucket (signed HEAD), which has it: nothing re-queued.
    lookups = harness.log_text().count("missing from s3://")
    harness.cli("push", str(top))
    harness.wait_drained(timeout=60)
    assert harness.log_text().count("missing from s3://") == lookups
    # status and the metrics say which transport, why, and what staging holds of its cap.
    state = harness.status()["local"]
    assert state["transport"].startswith("boto3 (auto: this Nix") or support.signed
    if not support.signed:
        assert (state["staging_bytes"], state["staging_max_bytes"]) == (0, 2 << 30)
        assert "transport local: boto3 (auto: this Nix" in harness.cli("status").stdout
        assert "staging holds 0 B of 2.0 GiB" in harness.cli("status").stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            metrics = reply.read().decode()
        assert 'npq_staging_bytes{target="local"} 0.0' in metrics
        assert "npq_staging_max_bytes 2.147483648e+09" in metrics
        assert re.search(r'npq_s3_requests_total\{target="local"\} [1-9]', metrics), metrics
    # The manual's procedure as a command: build, the hook queues, signed upload, read back
    # with boto3 into a local copy (this Nix cannot read a bucket that checks signatures),
    # signature checked, deleted, substituted back with signatures required, compared.
    proc = harness.cli("verify", "--timeout", "120", timeout=300)
    assert "all steps passed" in proc.stdout, proc.stdout + proc.stderr
    if not support.signed:
        assert "read back with boto3 into a local file:// copy" in proc.stdout
    assert bucket_problems(server) == []


@pytest.mark.parametrize("case", ["wrong-secret", "unknown-key", "no-credentials"])
def test_refused_credentials_are_dead_letters_at_once(
        case: str, s3_server_factory: Callable[..., S3Server],
        npq_daemon_factory: Callable[..., DaemonHarness]) -> None:
    server = s3_server_factory(auth=True)
    key, secret = server.credentials
    credentials: Any = {"wrong-secret": (key, "not-the-secret"),
                        "unknown-key": ("AKIANOTAKEYOFTHISSERVER", secret),
                        "no-credentials": False}[case]
    harness = s3_daemon(npq_daemon_factory, server, credentials=credentials)
    harness.start()
    paths = [harness.build(f"npq-s3-refused-{i}", f"{case} {i}") for i in range(3)]
    deadline = time.monotonic() + 60
    while {s for s, _ in harness.rows().values()} != {"dead"}:
        assert time.monotonic() < deadline, (harness.rows(), harness.log_text()[-3000:])
        time.sleep(0.2)
    # Dead at the first attempt, the batch not bisected: one failing upload.
    assert {attempts for _, attempts in harness.rows().values()} == {1}
    assert set(harness.rows()) == {str(p) for p in paths}
    error = harness.status()["local"]["last_error"]
    expected = {"wrong-secret": f"refused access key id {key}: the secret does not match",
                "unknown-key": "refused access key id AKIANOTAKEYOFTHISSERVER: the key id is "
                               "unknown",
                "no-credentials": "no AWS credentials for s3://npq-cache"}[case]
    assert expected in error, error
    if case == "no-credentials":
        assert str(harness.root / "no-aws-creds") in error
    log = harness.log_text()
    assert "not-the-secret" not in log and secret not in log and "botocore" not in log
    waited = harness.cli("wait", "--timeout", "30", check=False)
    assert waited.returncode != 0 and expected in waited.stderr + waited.stdout
    assert server.keys() == []


def test_auto_takes_nix_copy_where_this_nix_signs(
        nix: IsolatedNix, s3_server_factory: Callable[..., S3Server],
        npq_daemon_factory: Callable[..., DaemonHarness]) -> None:
    """Turns on by itself on a Nix built with AWS authentication (none of Debian's)."""
    support = stores.s3_support(None, nix.env())
    if support.signed is not True:
        pytest.skip(f"{support.nix} does not sign S3 requests: auto takes boto3 there "
                    "(test_signed_upload_substitutes_back)")
    server = s3_server_factory(auth=True)
    harness = s3_daemon(npq_daemon_factory, server)
    harness.start()
    path = harness.build("npq-s3-nix-signs", "signed by Nix itself")
    harness.wait_drained(timeout=120)
    assert f"transport nix (auto: this Nix ({support.nix}) signs S3 requests)" in (
        harness.log_text())
    assert bucket_problems(server) == []
    mirror_bucket(server, harness.cache_dir)
    harness.assert_substitutable(path)


def test_missing_bucket_is_a_dead_letter_and_a_down_endpoint_is_retried(
        s3_server_factory: Callable[..., S3Server],
        npq_daemon_factory: Callable[..., DaemonHarness]) -> None:
    server = s3_server_factory(auth=True)
    harness = s3_daemon(npq_daemon_factory, server)
    target = harness.config["targets"][0]
    target["url"] = server.url(bucket="no-such-bucket")
    closed = free_port()
    down = dict(target, name="down", url=f"s3://npq-cache?endpoint=http://127.0.0.1:{closed}"
                f"&region=us-east-1")
    harness.config["targets"].append(down)
    harness.start()
    harness.build("npq-s3-nobucket", "where does it go")
    deadline = time.monotonic() + 90
    while True:
        state = harness.status()
        if state["local"]["dead"] == 1 and state["down"]["last_error"]:
            break
        assert time.monotonic() < deadline, (state, harness.log_text()[-3000:])
        time.sleep(0.2)
    assert "the bucket no-such-bucket does not exist at http://127.0.0.1:" in (
        state["local"]["last_error"])
    # The endpoint that does not answer: transient, retried, never a dead letter.
    assert f"cannot reach the S3 endpoint of s3://npq-cache at http://127.0.0.1:{closed}" in (
        state["down"]["last_error"])
    assert state["down"]["dead"] == 0 and state["down"]["pending"] + state["down"][
        "inflight"] == 1
