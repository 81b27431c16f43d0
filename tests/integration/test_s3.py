"""The `nix` transport (`nix copy --to s3://`) end to end on a Nix with the S3 store (the
matrix's sid leg, Nix 2.34): the manual's
setup (schema/examples/s3-manual.yaml) with an `endpoint`, against a real S3 server on the
loopback (moto, tests/fixtures/s3.py), through the real hook, the real daemon and
`nix-push-queue verify --config`; and the outage scenario against that server.

Debian's Nix 2.34 opens s3:// stores but signs no request (built without AWS
authentication): the server then takes unsigned requests, and the test checks that the
daemon warned about it. On a Nix that signs requests, the server checks signatures, so an
upload only lands with the key from the config's `credentials_file`. The boto3 transport,
which `auto` picks on a Nix that does not sign, has its own tests (test_s3_boto3.py).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.s3host import S3Server

from nix_push_queue.nix import stores
from nix_push_queue.nix.isolated import IsolatedNix
from tests.fixtures.local_machine import (
    EXECUTABLE,
    DaemonUnit,
    LocalMachine,
    install,
    machine_env,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vm-tests"))

from scenarios import steps

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
MANUAL = REPO / "schema" / "examples" / "s3-manual.yaml"


@dataclass(frozen=True)
class S3Builder:
    machine: LocalMachine  # its commands can read the bucket (AWS credentials in env)
    daemon: DaemonUnit  # no AWS variable in its environment: only credentials_file
    nix: IsolatedNix
    config: Path  # the daemon's generated config
    url: str  # the bucket as a store URL, for reads
    public_key: str
    support: stores.S3Support


def manual_document(server: S3Server, nix: IsolatedNix, root: Path, run_dir: Path
                    ) -> tuple[dict[str, Any], str]:
    """s3-manual.yaml as a user would adapt it: their bucket, an `endpoint`, their key pair
    (same key name as the manual's) and credentials file; local paths for a test host."""
    document: dict[str, Any] = yaml.safe_load(MANUAL.read_text(encoding="utf-8"))
    keys = root / "keys"
    keys.mkdir(parents=True)
    secret, public = nix.generate_key("example-nix-cache-1", keys)
    target = document["targets"][0]
    target.update(url=f"s3://{server.bucket}", transport="nix",
                  secret_key_file=str(secret), public_key=public,
                  credentials_file=str(server.write_credentials(keys / "aws-credentials")),
                  options={"endpoint": server.endpoint, "region": "us-east-1"})
    document.update(
        substituters={"keep_defaults": False},
        nix={"store_dir": str(nix.store_dir)},
        service={"user": "root"},
    )
    document["queue"].update(
        socket=str(run_dir / "hook.sock"), state_dir=str(root / "state"),
        spool_dir=str(root / "spool"),
        retry={"initial_delay": 0.5, "max_delay": 2, "max_attempts": 1000})
    return document, public


@pytest.fixture
def s3_builder(nix_with_s3: stores.S3Support, s3_server_factory: Any, tmp_path: Path,
               short_run_dir: Path) -> Iterator[tuple[S3Builder, S3Server]]:
    # A Nix that signs requests meets a server that checks signatures.
    server: S3Server = s3_server_factory(auth=nix_with_s3.signed is True)
    root = tmp_path / "builder"
    nix = IsolatedNix.create(root / "nix")
    document, public = manual_document(server, nix, root, short_run_dir)
    config = install(nix, document, root)
    daemon_env = {k: v for k, v in machine_env(nix).items() if not k.startswith("AWS_")}
    daemon = DaemonUnit(config, short_run_dir / "hook.sock", daemon_env, root / "daemon.log",
                        root / "daemon.pid")
    env = dict(daemon_env, AWS_SHARED_CREDENTIALS_FILE=str(root / "keys" / "aws-credentials"))
    machine = LocalMachine("builder", env, root, {"nix-push-queue.socket": daemon,
                                                  "nix-push-queue.service": daemon})
    builder = S3Builder(machine, daemon, nix, config, server.url(), public, nix_with_s3)
    try:
        yield builder, server
    finally:
        daemon.stop()


def npq(builder: S3Builder, *args: str, timeout: float = 600
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXECUTABLE), *args], env=builder.machine.env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def status(builder: S3Builder) -> dict[str, Any]:
    proc = npq(builder, "status", "--json", "--socket",
               str(builder.daemon.socket_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    targets: dict[str, dict[str, Any]] = json.loads(proc.stdout)["targets"]
    return targets["s3"]


def narinfo_signatures(builder: S3Builder, path: str) -> list[str]:
    out = builder.machine.succeed(
        f"{steps.NIX} path-info --json --option narinfo-cache-negative-ttl 0 "
        f"--store {shlex.quote(builder.url)} {shlex.quote(path)}")
    doc = json.loads(out)
    info = doc[0] if isinstance(doc, list) else doc[path]
    return [str(s) for s in info.get("signatures", [])]


def test_manual_setup_hook_daemon_and_verify(s3_builder: tuple[S3Builder, S3Server]) -> None:
    builder, server = s3_builder
    machine = builder.machine
    machine.wait_for_unit(steps.SOCKET_UNIT)
    # The real post-build-hook (generated and included into nix.conf) queues the build.
    built = [steps.build(machine, "nix-build --no-out-link", "npq-s3-manual")]
    steps.wait_pushed(machine, builder.url, built, timeout=120)
    name = Path(built[0].path).name.split("-", 1)[0]
    assert f"{name}.narinfo" in set(server.keys())
    # Signed at upload with the config's secret_key_file (the manual's key name).
    assert [s.split(":")[0] for s in narinfo_signatures(builder, built[0].path)] == [
        "example-nix-cache-1"]
    steps.delete(machine, built)
    steps.substitute_back(machine, built, builder.public_key, builder.url)
    # The manual's test procedure as a command, on this host's Nix and daemon.
    proc = npq(builder, "verify", "--config", str(builder.config), "--timeout", "120")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all steps passed" in proc.stdout
    log = builder.daemon.tail()
    if builder.support.signed is False:
        assert "built without AWS authentication" in log
    state = status(builder)
    assert (state["done"], state["dead"], state["unsupported"]) == (2, 0, None)


def test_outage_builds_keep_going_and_everything_lands(
        s3_builder: tuple[S3Builder, S3Server]) -> None:
    builder, server = s3_builder
    machine = builder.machine
    machine.wait_for_unit(steps.SOCKET_UNIT)
    before = [steps.build(machine, "nix-build --no-out-link", f"npq-s3-before-{i}")
              for i in range(2)]
    steps.wait_pushed(machine, builder.url, before, timeout=120)
    server.stop()
    during = [steps.build(machine, "nix-build --no-out-link", f"npq-s3-down-{i}")
              for i in range(5)]
    # The daemon tried and failed while the server was down; nothing was given up.
    machine.wait_until_succeeds(
        f"{EXECUTABLE} status --json --socket {builder.daemon.socket_path} | "
        "grep -q '\"last_error\": \"[^\"]'", timeout=120)
    down = status(builder)
    assert down["dead"] == 0 and down["pending"] + down["inflight"] == 5, down
    server.start()
    steps.wait_pushed(machine, builder.url, during, timeout=300)
    proc = npq(builder, "wait", "--timeout", "120", "--socket", str(builder.daemon.socket_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = status(builder)
    assert (state["done"], state["dead"], state["pending"]) == (7, 0, 0), state
    everything = before + during
    steps.delete(machine, everything)
    steps.substitute_back(machine, everything, builder.public_key, builder.url)
