"""Real Nix reads what `generate` wrote: the fragment through `!include`, the hook wrapper
run by a real build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nix_push_queue.nix import dialect
from nix_push_queue.nix.isolated import IsolatedNix, text_derivation
from nix_push_queue.nix.pathinfo import parse_settings

pytestmark = pytest.mark.integration
NIXOS_KEY = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="
OTHER_KEY = "team-cache-1:Yvw+Aum5QONRe6Om0cz2tIVvNRD9WNnKoVH/HfPS1M8="


def npq() -> str:
    return shutil.which("nix-push-queue") or str(Path(sys.executable).parent / "nix-push-queue")


# generate refuses a hook program another user could change (docs/security.md): these tests
# pass this checkout's own program, in a root-owned venv as the suite runs it.
def run_cli(*args: object) -> subprocess.CompletedProcess[str]:
    if args[:1] == ("generate",) and "--executable" not in args:
        args = (*args, "--executable", npq())
    return subprocess.run([npq(), *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def show_config(nix: IsolatedNix) -> dict[str, Any]:
    shown = parse_settings(nix.run(dialect.detect(None, nix.env()).config_show_json()).stdout)
    return {k: shown[k] for k in
            ("substituters", "trusted-public-keys", "secret-key-files", "post-build-hook")}


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("keep_defaults", [True, False])
def test_nix_reads_the_fragment(nix: IsolatedNix, tmp_path: Path, keep_defaults: bool) -> None:
    secret, public = nix.generate_key("npq-test-1", tmp_path)
    cache = tmp_path / "cache"
    cfg = write_config(tmp_path / "c.yaml", {
        "targets": [{"name": "local", "url": f"file://{cache}", "secret_key_file": str(secret),
                     "public_key": public, "substitute": True, "priority": 25}],
        "substituters": {"urls": ["https://other.example.org"],
                         "trusted_public_keys": [OTHER_KEY], "keep_defaults": keep_defaults},
        "nix": {"secret_key_files": [str(secret)], "state_dir": str(nix.state_dir)},
    })
    out = tmp_path / "out"
    original = nix.conf_file.read_bytes()
    before = show_config(nix)
    result = run_cli("generate", cfg, "--out", out, "--prefix", out,
                     "--include-into", nix.conf_file)
    assert result.returncode == 0, result.stderr
    assert f"added `!include {out}/etc/nix/nix-push-queue.conf`" in result.stdout

    seen = show_config(nix)
    # nixenv's base nix.conf empties `substituters` but keeps Nix's default key list.
    assert seen["substituters"] == [f"file://{cache}?priority=25", "https://other.example.org"]
    keys = [public, OTHER_KEY]
    assert seen["trusted-public-keys"] == ([NIXOS_KEY, *keys] if keep_defaults else keys)
    assert seen["secret-key-files"] == [str(secret)]
    assert seen["post-build-hook"] == f"{out}/etc/nix-push-queue/post-build-hook"

    again = run_cli("generate", cfg, "--out", out, "--prefix", out,
                    "--include-into", nix.conf_file)
    assert again.returncode == 0 and "already includes" in again.stdout
    assert nix.conf_file.read_bytes().count(b"!include") == 1

    removed = run_cli("generate", "--remove-include", nix.conf_file, "--prefix", out)
    assert removed.returncode == 0, removed.stderr
    assert nix.conf_file.read_bytes() == original
    assert show_config(nix) == before


def test_consumer_only_host(nix: IsolatedNix, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", {"substituters": {
        "urls": ["https://other.example.org"], "trusted_public_keys": [OTHER_KEY]}})
    out = tmp_path / "out"
    result = run_cli("generate", cfg, "--out", out, "--prefix", out,
                     "--include-into", nix.conf_file)
    assert result.returncode == 0, result.stderr
    seen = show_config(nix)
    assert seen["substituters"] == ["https://other.example.org"]
    assert seen["trusted-public-keys"] == [NIXOS_KEY, OTHER_KEY]
    assert seen["post-build-hook"] == ""
    assert not (out / "etc/systemd").exists()


def test_real_build_runs_the_hook_wrapper(nix: IsolatedNix, tmp_path: Path) -> None:
    # A stand-in for nix-push-queue that records how the wrapper called it; the directory
    # name has a space and quotes, which the wrapper must pass through intact. The wrapper
    # calls it only when it cannot write the spool itself: here the spool's parent is a file.
    (tmp_path / "a-file").write_text("")
    spool = tmp_path / "a-file" / "spool"
    record = tmp_path / "record"
    bindir = tmp_path / "bin dir 'q'"
    bindir.mkdir()
    fake = bindir / "nix-push-queue"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" "DRV_PATH=$DRV_PATH" > "{record}"\n')
    fake.chmod(0o755)
    cfg = write_config(tmp_path / "c.yaml", {
        "targets": [{"name": "local", "url": f"file://{tmp_path / 'cache'}"}],
        "queue": {"socket": str(tmp_path / "q.sock"), "state_dir": str(tmp_path / "state"),
                  "spool_dir": str(spool)},
        "nix": {"store_dir": str(nix.store_dir), "state_dir": str(nix.state_dir)},
        "hook": {"timeout": 1.5},
        "service": {"user": "root"},  # state outside /var/lib needs a static user
    })
    out = tmp_path / "out"
    result = run_cli("generate", cfg, "--out", out, "--prefix", out, "--executable", fake,
                     "--include-into", nix.conf_file)
    assert result.returncode == 0, result.stderr
    (built,) = nix.build_expr(text_derivation("npq-hook-wrapper", os.urandom(8).hex()))
    args = record.read_text().splitlines()
    assert args[:-1] == ["hook", "--socket", str(tmp_path / "q.sock"),
                         "--spool-dir", str(spool),
                         "--store-dir", str(nix.store_dir), "--state-dir", str(nix.state_dir),
                         "--timeout", "1.5"]
    drv = args[-1].removeprefix("DRV_PATH=")
    assert drv.endswith(".drv") and drv.startswith(str(nix.store_dir))
    assert str(built) in nix.run(["nix-store", "--query", "--outputs", drv]).stdout
