"""`nix-push-queue verify` end to end: the embedded default (hook -> daemon -> file:// cache)
and a configured nginx target with the real daemon; a tampered narinfo signature must fail
the signature step."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.client.control import ControlClient
from nix_push_queue.config import load_config
from nix_push_queue.errors import VerifyFailed
from nix_push_queue.verify.procedure import Context, Procedure

from ..fixtures.daemon import DaemonHarness
from ..fixtures.nginx import NginxCache

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "nix_push_queue"]
STEP = re.compile(r"^\[(\d+)/(\d+)\] .* \.\.\. (ok|FAILED) \((\d+\.\d+) s\)$", re.MULTILINE)


def _verify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "verify", *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def test_embedded_default_runs_every_step_and_cleans_up() -> None:
    proc = _verify()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = STEP.findall(proc.stdout)
    assert [(n, total, status) for n, total, status, _ in steps] == [
        (str(i), "7", "ok") for i in range(1, 8)]
    assert "all steps passed" in proc.stdout
    # The queue step's progress (stderr is no terminal here: plain lines and a summary).
    assert re.search(r"^verify: local: 1/1 paths, .*, 0 retries, 0 dead$", proc.stderr, re.M)
    root = re.search(r"embedded default in (\S+):", proc.stdout)
    assert root is not None
    assert not Path(root.group(1)).exists(), "the temporary directory was left behind"
    print("\n" + proc.stdout)


def _nginx_harness(factory: Callable[..., DaemonHarness], nginx: NginxCache) -> DaemonHarness:
    # No post-build-hook in this Nix: verify must queue the path with the push op.
    harness = factory(hook=False)
    target: dict[str, Any] = harness.config["targets"][0]
    target.update(name="http", url=nginx.url)
    harness.start()
    return harness


def test_config_with_nginx_target_through_the_daemon(
        npq_daemon_factory: Callable[..., DaemonHarness], nginx_cache: NginxCache) -> None:
    harness = _nginx_harness(npq_daemon_factory, nginx_cache)
    proc = _verify("--config", str(harness.config_path), "--target", "http",
                   env=harness.env())
    assert proc.returncode == 0, proc.stdout + proc.stderr + harness.log_text()
    assert "no post-build-hook" in proc.stdout
    assert len(STEP.findall(proc.stdout)) == 7
    assert any(nginx_cache.cache_dir.glob("*.narinfo"))
    print("\n" + proc.stdout)


def test_wrong_public_key_fails_at_the_signature_step(
        npq_daemon_factory: Callable[..., DaemonHarness], nginx_cache: NginxCache) -> None:
    harness = _nginx_harness(npq_daemon_factory, nginx_cache)
    # Same key name, other key: what a consumer with a stale public key would see.
    (harness.root / "other").mkdir()
    _, other = harness.nix.generate_key(harness.public_key.split(":")[0],
                                        harness.root / "other")
    harness.config["targets"][0]["public_key"] = other
    harness.write_config()
    proc = _verify("--config", str(harness.config_path), env=harness.env())
    assert proc.returncode == 8, proc.stdout + proc.stderr
    assert "verify failed at step 'signature'" in proc.stderr
    assert [s[2] for s in STEP.findall(proc.stdout)] == ["ok", "ok", "ok", "FAILED"]


def test_tampered_narinfo_signature_fails(
        npq_daemon_factory: Callable[..., DaemonHarness], nginx_cache: NginxCache) -> None:
    harness = _nginx_harness(npq_daemon_factory, nginx_cache)
    config = load_config(harness.config_path)
    client = ControlClient(config.queue.socket)
    out: list[str] = []
    ctx = Context(env=harness.env(), timeout=120, write=out.append,
                  enqueue=lambda paths: client.enqueue(paths, "push"))
    procedure = Procedure(ctx, config.targets)
    target = config.targets[0]
    built = procedure.build()
    procedure.wait_pushed(target, built)
    procedure.check_signature(target, built)  # genuine: passes

    narinfo = nginx_cache.cache_dir / f"{Path(built.path).name[:32]}.narinfo"
    text = narinfo.read_text()
    name, sig = re.search(r"^Sig: ([^:]+):(\S+)$", text, re.MULTILINE).groups()  # type: ignore[union-attr]
    raw = bytearray(base64.b64decode(sig))
    raw[0] ^= 0xFF
    narinfo.write_text(text.replace(sig, base64.b64encode(bytes(raw)).decode()))

    with pytest.raises(VerifyFailed) as failure:
        procedure.check_signature(target, built)
    assert failure.value.step == "signature"
    assert name in failure.value.reason
    # Substitution enforces the same check: the tampered path does not come back.
    procedure.delete(built)
    with pytest.raises(VerifyFailed) as failure:
        procedure.substitute(target, built)
    assert failure.value.step == "substitute"
    assert not Path(built.path).exists()
