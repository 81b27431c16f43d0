"""The NixOS module's build step, done here the way its derivation does it.

module.nix turns `settings` into JSON (nix/settings-json.nix, typed options left unset are
null), runs `nix-push-queue validate` and `generate --flavor nixos --out $out --prefix $out`,
and refers to files by nix/layout.nix. Here the same JSON comes from real Nix, the same
commands run, and the files the module points at must exist and point at each other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.nix.isolated import IsolatedNix

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXECUTABLE = Path(sys.executable).parent / "nix-push-queue"

# What the module's option types make of a user's settings: every typed target option
# present, null when unset, beside freeform keys.
MODULE_SETTINGS = """{
  targets = [
    { name = "cache"; url = "s3://bucket"; secret_key_file = "/run/keys/cache.sec";
      public_key = null; ssh_key_file = null; credentials_file = "/run/keys/aws";
      options = { region = "eu-west-1"; endpoint = "http://minio:9000"; }; }
    { name = "lan"; url = "file:///var/lib/nix-cache"; secret_key_file = null;
      public_key = null; ssh_key_file = null; credentials_file = null; }
  ];
  queue.retry.initial_delay = 1;
  filters.skip_signed_by = [ "cache.nixos.org-1" ];
}"""


def npq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXECUTABLE), *args], capture_output=True, text=True,
                          timeout=120, check=False)


def nix_eval(nix: IsolatedNix, expr: str) -> Any:
    proc = nix.run(["nix-instantiate", "--eval", "--strict", "--json", "--expr", expr])
    return json.loads(proc.stdout)


def test_module_build_step(nix: IsolatedNix, tmp_path: Path) -> None:
    document = nix_eval(nix, f"import {REPO}/nix/settings-json.nix {MODULE_SETTINGS}")
    assert "public_key" not in document["targets"][0]  # nulls dropped, or validate refuses
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(document), encoding="utf-8")
    layout = nix_eval(nix, f"import {REPO}/nix/layout.nix")

    checked = npq("validate", str(settings))
    assert checked.returncode == 0, checked.stderr
    out = tmp_path / "out"
    generated = npq("generate", str(settings), "--flavor", "nixos", "--out", str(out),
                    "--prefix", str(out), "--executable", "/run/current-system/sw/bin/npq")
    assert generated.returncode == 0, generated.stderr

    hook = out / layout["hook"]
    assert os.access(hook, os.X_OK)
    config = json.loads((out / layout["config"]).read_text(encoding="utf-8"))
    assert config["queue"]["retry"]["initial_delay"] == 1
    fragment = (out / layout["fragment"]).read_text(encoding="utf-8")
    assert f"post-build-hook = {hook}" in fragment
    service = (out / layout["units"][1]).read_text(encoding="utf-8")
    assert f"--config {out / layout['config']}" in service
    assert "LoadCredential=cache-secret-key:/run/keys/cache.sec" in service
    assert "LoadCredential=cache-credentials:/run/keys/aws" in service
    assert all((out / unit).is_file() for unit in layout["units"])  # socket, path
    assert "PathExistsGlob=/var/lib/nix-push-queue/spool/*.spool" in (
        out / layout["units"][2]).read_text(encoding="utf-8").splitlines()
    tmpfiles = (out / layout["tmpfiles"]).read_text(encoding="utf-8")
    assert "\nd /nix/var/nix/gcroots/nix-push-queue " in tmpfiles


def test_module_build_step_refuses_bad_settings(nix: IsolatedNix, tmp_path: Path) -> None:
    """What the NixOS build log shows for wrong settings: the validator's located message."""
    bad = MODULE_SETTINGS.replace('url = "s3://bucket"', 'url = "ftp://bucket"')
    document = nix_eval(nix, f"import {REPO}/nix/settings-json.nix {bad}")
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(document, indent=2), encoding="utf-8")
    checked = npq("validate", str(settings))
    assert checked.returncode == 1
    assert "targets[0].url" in checked.stderr
