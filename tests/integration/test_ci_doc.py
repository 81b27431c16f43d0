"""docs/ci.md as written: its GitHub Actions and GitLab CI jobs run, step by step, on a
"runner" with a real daemon, real Nix (the post-build hook on) and a flake checkout, and the
built output ends up substitutable from the cache; its exit code table matches the program.

The runner's `nix-push-queue` reads /etc/nix-push-queue/config.json; here a wrapper on PATH
adds `--config` for the test's daemon instead. Nothing else in the commands is changed.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nix_push_queue import errors
from tests.fixtures.daemon import NPQ, DaemonHarness

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"
FLAKE = """{{
  outputs = {{ self }}: {{
    packages.{system}.default = derivation {{
      name = "ci-doc"; system = "{system}"; builder = "/bin/sh";
      args = [ "-c" "echo {nonce} > $out" ];
    }};
  }};
}}
"""


def yaml_blocks() -> list[Any]:
    return [yaml.safe_load(block) for block in
            re.findall(r"```yaml\n(.*?)```", DOC.read_text("utf-8"), re.S)]


def github_steps() -> list[str]:
    doc = next(b for b in yaml_blocks() if "jobs" in b)
    (job,) = doc["jobs"].values()
    steps = job["steps"]
    assert steps[0]["uses"].startswith("actions/checkout")
    return [step["run"] for step in steps[1:]]


def gitlab_script() -> list[str]:
    doc = next(b for b in yaml_blocks() if "jobs" not in b)
    (job,) = doc.values()
    return list(job["script"])


def runner(d: DaemonHarness, tmp_path: Path, name: str) -> tuple[Path, dict[str, str]]:
    """A checkout holding a flake, and the runner's environment."""
    checkout = tmp_path / name
    checkout.mkdir()
    system = d.nix.run(["nix-instantiate", "--eval", "--expr", "builtins.currentSystem"]
                       ).stdout.strip().strip('"')
    (checkout / "flake.nix").write_text(
        FLAKE.format(system=system, nonce=uuid.uuid4().hex), "utf-8")
    bin_dir = tmp_path / f"{name}-bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "nix-push-queue"
    wrapper.write_text(f'#!/bin/sh\nexec {NPQ} "$@" --config {d.config_path}\n', "utf-8")
    wrapper.chmod(0o755)
    env = d.env()
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env["NIX_CONFIG"] = "extra-experimental-features = nix-command flakes"
    return checkout, env


def run_job(commands: list[str], checkout: Path, env: dict[str, str]) -> list[str]:
    """Each command as its own step: bash -e, as both CI systems run a step."""
    logs = []
    for command in commands:
        proc = subprocess.run(["bash", "-e", "-c", command], cwd=checkout, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, f"{command} exited {proc.returncode}:\n{proc.stderr}"
        logs.append(proc.stdout + proc.stderr)
    return logs


@pytest.mark.parametrize("system", ["github", "gitlab"])
def test_the_ci_job_in_the_doc_runs(npq_daemon_factory: Callable[..., DaemonHarness],
                                    tmp_path: Path, system: str) -> None:
    d = npq_daemon_factory()  # the post-build hook on, as on the builder
    d.start()
    commands = github_steps() if system == "github" else gitlab_script()
    assert any(c.startswith("nix-push-queue push --wait --timeout ") for c in commands)
    checkout, env = runner(d, tmp_path, system)
    logs = run_job(commands, checkout, env)
    built = (checkout / "result").resolve()
    assert d.rows()[str(built)][0] == "done"
    assert "1 path(s) on every target (local)" in logs[-1]
    assert re.search(r"push: local: 1/1 paths", logs[-1]), logs[-1]
    # The hook had queued it already: push found it queued.
    assert "queued 0, already queued or excluded 1" in logs[-1]
    (checkout / "result").unlink()  # the out-link roots it; the cache must serve it
    d.assert_signed(built)
    d.assert_substitutable(built)


def test_the_exit_codes_in_the_doc_are_the_programs() -> None:
    text = DOC.read_text("utf-8")
    table = dict(re.findall(r"^\| (\d+) \| ([^|]+) \|", text, re.M))
    expected: dict[str, type[errors.NpqError]] = {
        "9": errors.WaitTimeout, "10": errors.DeadLetters, "13": errors.PathsLost,
        "14": errors.NotQueued, "6": errors.DaemonUnavailable, "5": errors.ProtocolError,
        "3": errors.NixError, "1": errors.ConfigError}
    assert set(table) == {"0", *expected}
    for code, cls in expected.items():
        assert cls.exit_code == int(code), (code, cls)
