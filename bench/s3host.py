"""A real S3-compatible server on the loopback for the tests and the benchmarks: moto's
standalone server (`moto_server`, from the `test` extras), with one bucket, behind a TCP
proxy (bench.delayproxy, no delay) that an outage test cuts and restores.

Why a proxy: moto keeps its objects in its own process, so stopping moto itself would lose the
bucket, which a real S3 outage does not. `stop()` SIGKILLs the proxy: open connections die,
new ones are refused on the endpoint's port, as when the server is down; `start()` listens on
the same port again and the bucket is as it was. `endpoint` is the proxy; `direct_endpoint`
is moto itself (for benchmarks, without the proxy's copying). Objects above 1 MiB go to
moto's temporary files rather than its memory.

`auth=True` makes moto check request signatures (SigV4) against an access key it issues
(moto's INITIAL_NO_AUTH_ACTION_COUNT lets the three IAM calls that create the key through
unsigned): then only a client holding `credentials` gets in. Debian's Nix 2.34 sends unsigned
requests (built without AWS authentication, see nix_push_queue/nix/stores.py).

Like a real bucket, moto's refuses anonymous reads unless a bucket policy allows them;
`public_read` (the default without `auth`) sets the Nix manual's "anonymous reads" policy
(s3:GetObject, s3:GetBucketLocation, s3:ListBucket for everyone), as a cache that Nix
substitutes from without credentials needs. `add_bucket` makes more buckets the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
REGION = "us-east-1"
START_TIMEOUT = 60.0
# The IAM calls that create the access key, answered before moto starts checking signatures.
_SETUP_CALLS = 3
_ALLOW_S3 = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
# Bytes of an object moto keeps in memory before it spills to a temporary file.
_KEY_BUFFER = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not accepts_connections(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not start on port {port}: "
                               f"{log.read_text(errors='replace')[-1500:]}")
        time.sleep(0.05)


class S3Server:
    """moto_server plus the cuttable proxy; see the module docstring."""

    def __init__(self, root: Path, *, bucket: str = "npq-cache", auth: bool = False,
                 public_read: bool | None = None) -> None:
        self.root = root
        self.bucket = bucket
        self.auth = auth
        self.public_read = not auth if public_read is None else public_read
        root.mkdir(parents=True, exist_ok=True)
        self.moto_port = free_port()
        self.port = free_port()
        # Until `_setup` issues a key: any key works while moto does not check signatures.
        self.credentials = ("npq-test", "npq-test-secret")
        self._moto: subprocess.Popen[bytes] | None = None
        self._proxy: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def direct_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def url(self, *, direct: bool = False, bucket: str | None = None, **params: str) -> str:
        """A bucket as a Nix store URL (without keys; add `secret-key=` to upload)."""
        endpoint = self.direct_endpoint if direct else self.endpoint
        query = "&".join(f"{k}={v}" for k, v in
                         {"endpoint": endpoint, "region": REGION, **params}.items())
        return f"s3://{bucket or self.bucket}?{query}"

    @property
    def up(self) -> bool:
        return self._proxy is not None and self._proxy.poll() is None

    def write_credentials(self, path: Path) -> Path:
        """An AWS shared credentials file ([default] profile) with this server's key."""
        key, secret = self.credentials
        path.write_text(f"[default]\naws_access_key_id = {key}\n"
                        f"aws_secret_access_key = {secret}\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    def launch(self) -> None:
        """Start moto, issue the key (auth) and create the bucket, then open the proxy."""
        env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
        env["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(_KEY_BUFFER)
        if self.auth:  # unset: moto never checks signatures
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_SETUP_CALLS)
        log = self.root / "moto.log"
        with log.open("ab") as out:
            self._moto = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.moto_port)], env=env,
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_port(self.moto_port, self._moto, "moto_server", log)
        self._setup()
        self.start()

    def _client(self, service: str, credentials: tuple[str, str] | None = None) -> Any:
        import boto3  # type: ignore[import-untyped]

        key, secret = credentials or self.credentials
        return boto3.client(service, endpoint_url=self.direct_endpoint, region_name=REGION,
                            aws_access_key_id=key, aws_secret_access_key=secret)

    def _setup(self) -> None:
        if self.auth:
            iam = self._client("iam")
            iam.create_user(UserName="npq-uploader")
            key = iam.create_access_key(UserName="npq-uploader")["AccessKey"]
            iam.put_user_policy(UserName="npq-uploader", PolicyName="cache",
                                PolicyDocument=_ALLOW_S3)
            self.credentials = (key["AccessKeyId"], key["SecretAccessKey"])
        self.add_bucket(self.bucket)

    def add_bucket(self, bucket: str) -> None:
        s3 = self._client("s3")
        s3.create_bucket(Bucket=bucket)
        if self.public_read:
            arn = f"arn:aws:s3:::{bucket}"
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Sid": "AllowDirectReads", "Effect": "Allow", "Principal": "*",
                               "Action": ["s3:GetObject", "s3:GetBucketLocation",
                                          "s3:ListBucket"],
                               "Resource": [arn, f"{arn}/*"]}]}))

    def keys(self, credentials: tuple[str, str] | None = None, bucket: str | None = None
             ) -> list[str]:
        """Every object key in a bucket (straight from moto, not through the proxy)."""
        s3 = self._client("s3", credentials)
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket or self.bucket):
            keys += [str(o["Key"]) for o in page.get("Contents", [])]
        return keys

    def start(self) -> None:
        """Open the endpoint (again), on the same port."""
        if self.up:
            return
        log = self.root / "proxy.log"
        with log.open("ab") as out:
            self._proxy = subprocess.Popen(
                [sys.executable, "-m", "bench.delayproxy", "--listen",
                 f"127.0.0.1:{self.port}", "--upstream", f"127.0.0.1:{self.moto_port}",
                 "--delay", "0"],
                cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=out, stderr=out,
                stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_port(self.port, self._proxy, "the S3 proxy", log)

    def stop(self) -> None:
        """The outage: the endpoint goes away at once, connections and all."""
        proc, self._proxy = self._proxy, None
        _kill(proc)

    def close(self) -> None:
        self.stop()
        proc, self._moto = self._moto, None
        _kill(proc)


def _kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


