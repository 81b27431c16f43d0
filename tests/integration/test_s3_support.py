"""S3 support, asked of the real Nix of each matrix leg: Debian's 2.8 and 2.26 have no S3
store, 2.34 has it without AWS authentication.

The detection (nix/stores.py) is judged against what Nix does with a real S3 server; on a Nix
without S3 the daemon says so once per target at start, runs no upload for it, dead-letters
its paths at once with the reason, `status` shows it, `wait` fails with it, and `validate`
warns without failing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bench.s3host import S3Server

from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.nix import stores
from nix_push_queue.nix.isolated import IsolatedNix
from tests.fixtures.daemon import DaemonHarness

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CLI = [str(Path(sys.executable).parent / "nix-push-queue")]
REFUSED = "don't know how to open nix store"


def store_info(nix: IsolatedNix, url: str, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    """`nix store ping` (2.8's spelling; an alias of `store info` later) on the bucket."""
    return subprocess.run(
        ["nix", "--extra-experimental-features", "nix-command", "store", "ping",
         "--option", "download-attempts", "1", "--store", url],
        env=nix.env(env), capture_output=True, text=True, timeout=120, check=False)


def test_detection_agrees_with_what_nix_does(nix: IsolatedNix,
                                             s3_server_factory: Callable[..., S3Server],
                                             tmp_path: Path) -> None:
    support = stores.s3_support(None, nix.env())
    # Ground truth 1: does this Nix open an s3:// store on a real server?
    server = s3_server_factory()
    opened = store_info(nix, server.url())
    assert support.supported == (REFUSED not in opened.stderr.lower()), opened.stderr
    assert support.method in ("__dump-cli", "describe-stores")
    if not support.supported:
        assert opened.returncode != 0 and support.signed is None
        return
    assert opened.returncode == 0, opened.stderr
    # Ground truth 2: does it sign requests with the credentials it is given? A server that
    # checks signatures lets only a signing Nix in. Another bucket name: Nix caches what it
    # learnt of a cache by `s3://BUCKET` alone, whatever the endpoint.
    checked = s3_server_factory(auth=True, bucket="npq-checked")
    creds = checked.write_credentials(tmp_path / "aws-credentials")
    signed = store_info(nix, checked.url(), {"AWS_SHARED_CREDENTIALS_FILE": str(creds)})
    assert support.signed == (signed.returncode == 0), signed.stderr


def test_s3_server_checks_keys_and_keeps_its_bucket_across_an_outage(
        s3_server_factory: Callable[..., S3Server]) -> None:
    import botocore.exceptions  # type: ignore[import-untyped]

    server = s3_server_factory(auth=True)
    assert server.keys() == []
    key, _ = server.credentials
    with pytest.raises(botocore.exceptions.ClientError, match="SignatureDoesNotMatch"):
        server.keys((key, "not-the-secret"))
    server._client("s3").put_object(Bucket=server.bucket, Key="nix-cache-info", Body=b"x")
    server.stop()
    assert not server.up
    with pytest.raises(OSError):
        import socket

        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    server.start()
    assert server.keys() == ["nix-cache-info"]


@pytest.fixture
def nix_without_s3(nix: IsolatedNix) -> stores.S3Support:
    support = stores.s3_support(None, nix.env())
    if support.supported:
        pytest.skip(f"{support.nix} has the S3 store; this runs on the 2.8 and 2.26 legs")
    return support


def test_daemon_on_a_nix_without_s3(nix_without_s3: stores.S3Support,
                                    npq_daemon_factory: Callable[..., DaemonHarness]) -> None:
    # Queued with `push`: the hook's path into the queue is the same `enqueue`.
    harness = npq_daemon_factory(hook=False)
    local = harness.config["targets"][0]
    # `transport: nix` asks for `nix copy` straight to the bucket, which this Nix cannot do
    # (auto would take the boto3 transport: test_s3_boto3.py).
    s3: dict[str, Any] = {"name": "s3", "url": "s3://npq-cache", "transport": "nix",
                          "secret_key_file": local["secret_key_file"],
                          "public_key": local["public_key"],
                          "options": {"endpoint": "http://127.0.0.1:9", "region": "us-east-1"}}
    harness.config["targets"].append(s3)
    harness.start()
    log = harness.log_text()
    start_lines = [line for line in log.splitlines() if "was built without S3 support" in line]
    assert len(start_lines) == 1 and "target s3 (s3://npq-cache)" in start_lines[0], log
    assert nix_without_s3.nix in start_lines[0]

    path = harness.build("npq-no-s3", "content")
    harness.cli("push", str(path))
    db = harness.state_dir / "queue.sqlite"

    def s3_rows() -> list[tuple[str, str, str, int]]:
        with QueueStore(db) as store:
            return [(p, t, str(state), n) for p, t, state, n in store.jobs("s3")]

    deadline = time.monotonic() + 60
    while s3_rows() != [(str(path), "s3", "dead", 1)]:
        assert time.monotonic() < deadline, (s3_rows(), harness.log_text()[-3000:])
        time.sleep(0.2)
    while harness.status()["local"]["done"] != 1:  # the local target's upload runs apart
        assert time.monotonic() < deadline, harness.log_text()[-3000:]
        time.sleep(0.2)
    status = harness.status()
    assert status["local"]["unsupported"] is None
    assert status["s3"]["dead"] == 1
    assert "without S3 support" in status["s3"]["unsupported"]
    assert "without S3 support" in status["s3"]["last_error"]
    table = harness.cli("status").stdout
    assert "unsupported s3: this Nix" in table
    waited = harness.cli("wait", "--timeout", "30", check=False)
    assert waited.returncode != 0 and "without S3 support" in waited.stderr
    # Dead-lettered by the sweep, never handed to the worker: no upload attempt, no retry.
    log = harness.log_text()
    assert "target s3: 1 path(s) are dead letters" in log
    assert not [line for line in log.splitlines()
                if "target s3:" in line and ("attempt" in line or "splitting" in line)]


def test_validate_says_which_transport_and_warns_where_it_cannot_work(
        nix: IsolatedNix, tmp_path: Path) -> None:
    support = stores.s3_support(None, nix.env())
    example = REPO / "schema" / "examples" / "s3-manual.yaml"
    proc = subprocess.run([*CLI, "validate", str(example)], env=nix.env(dict(os.environ)),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{example}: ok")
    # auto: nix copy where this Nix signs S3 requests, boto3 otherwise; no warning either way.
    expected = "nix (auto: this Nix" if support.signed else "boto3 (auto: this Nix"
    assert f"targets[0] (s3): transport {expected} ({support.nix})" in proc.stdout
    assert [line for line in proc.stderr.splitlines() if "warning:" in line] == []
    # transport: nix on a Nix that cannot do it warns, naming the field and the way out.
    forced = tmp_path / "s3-nix.yaml"
    forced.write_text(example.read_text(encoding="utf-8").replace(
        "  - name: s3\n", "  - name: s3\n    transport: nix\n"), encoding="utf-8")
    proc = subprocess.run([*CLI, "validate", str(forced)], env=nix.env(dict(os.environ)),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "transport nix (the target's transport is nix)" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    if not support.supported:
        assert len(warnings) == 1 and "targets[0].url" in warnings[0], proc.stderr
        assert "without S3 support" in warnings[0] and support.nix in warnings[0]
        assert "transport: boto3" in warnings[0]
    elif support.signed is False:
        assert len(warnings) == 1 and "targets[0].credentials_file" in warnings[0]
        assert "without AWS authentication" in warnings[0]
    else:
        assert warnings == []
