"""`nix-push-queue generate` through the real program: exit codes, messages, and the
guarantees of the writer seen from outside."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_generate_writer import snapshot

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "schema/examples/file-cache.yaml"
SERVICE = "etc/systemd/system/nix-push-queue.service"


# generate refuses a hook program another user could change (docs/security.md): these tests
# pass this checkout's own program, in a root-owned venv as the suite runs it.
def npq(*args: object) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("nix-push-queue") or str(Path(sys.executable).parent / "nix-push-queue")
    if args[:1] == ("generate",) and "--executable" not in args:
        args = (*args, "--executable", exe)
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120,
                          check=False)


def test_generate_prints_what_it_wrote_then_nothing_changes(tmp_path: Path) -> None:
    first = npq("generate", EXAMPLE, "--out", tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"create    {tmp_path}/{SERVICE}" in first.stdout.splitlines()
    assert (tmp_path / "etc/nix-push-queue/post-build-hook").stat().st_mode & 0o777 == 0o755
    second = npq("generate", EXAMPLE, "--out", tmp_path)
    assert all(line.startswith("unchanged") for line in second.stdout.splitlines())


def test_foreign_file_is_refused_with_exit_4(tmp_path: Path) -> None:
    (tmp_path / SERVICE).parent.mkdir(parents=True)
    (tmp_path / SERVICE).write_text("[Service]\nExecStart=/usr/bin/mine\n")
    before = snapshot(tmp_path)
    result = npq("generate", EXAMPLE, "--out", tmp_path)
    assert result.returncode == 4
    assert "did not write" in result.stderr and str(tmp_path / SERVICE) in result.stderr
    assert snapshot(tmp_path) == before
    forced = npq("generate", EXAMPLE, "--out", tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr


def test_unusable_include_target_fails_before_writing(tmp_path: Path) -> None:
    (tmp_path / "real.conf").write_text("sandbox = true\n")
    (tmp_path / "nix.conf").symlink_to(tmp_path / "real.conf")
    out = tmp_path / "out"
    result = npq("generate", EXAMPLE, "--out", out, "--include-into", tmp_path / "nix.conf")
    assert result.returncode == 4 and "symlink" in result.stderr
    assert not out.exists()


def test_value_nix_cannot_spell_is_reported_at_its_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("targets:\n  - {name: a, url: 'file:///c'}\nnix:\n"
                      "  secret_key_files:\n    - /etc/nix/my key.pem\n")
    result = npq("generate", config, "--out", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.startswith(f"{config}:5: nix.secret_key_files[0]: ")
    assert "whitespace" in result.stderr
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert npq("generate", EXAMPLE).returncode == 2  # no --out
    nixos = npq("generate", EXAMPLE, "--out", tmp_path, "--flavor", "nixos",
                "--include-into", tmp_path / "nix.conf")
    assert nixos.returncode == 2 and "NixOS" in nixos.stderr
    relative = npq("generate", EXAMPLE, "--out", tmp_path, "--executable", "bin/npq")
    assert relative.returncode == 1
    assert "command line: --executable:" in relative.stderr


def test_nixos_flavor_layout(tmp_path: Path) -> None:
    result = npq("generate", EXAMPLE, "--out", tmp_path, "--prefix", tmp_path,
                 "--flavor", "nixos", "--executable", "/nix/store/x-npq/bin/nix-push-queue")
    assert result.returncode == 0, result.stderr
    unit = (tmp_path / "lib/systemd/system/nix-push-queue.service").read_text()
    assert f"--config {tmp_path}/etc/nix-push-queue/config.json" in unit
    assert not (tmp_path / "etc/systemd").exists()


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    result = npq("generate", EXAMPLE, "--out", tmp_path / "out", "--dry-run",
                 "--include-into", tmp_path / "nix.conf")
    assert result.returncode == 0, result.stderr
    assert "would create" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_symlinked_unit_directory_leading_out_is_refused_with_exit_4(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "etc/systemd").mkdir(parents=True)
    (out / "etc/systemd/system").symlink_to(elsewhere)
    before = snapshot(out)
    result = npq("generate", EXAMPLE, "--out", out)
    assert result.returncode == 4, result.stderr
    assert (f"{out}/etc/systemd/system is a symlink to {elsewhere}, outside {out}"
            in result.stderr), result.stderr
    assert snapshot(out) == before and not any(elsewhere.iterdir())
