"""`generate` through the real CLI: a planted manifest removes nothing, and an `--include-into`
that cannot be written leaves no generated file behind."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from nix_push_queue.generate import MARKER
from nix_push_queue.generate.writer import MANIFEST
from tests.integration.test_validate_broken import npq

pytestmark = pytest.mark.integration

CONFIG = "targets:\n  - name: a\n    url: file:///srv/cache\n"


# generate refuses a hook program another user could change (docs/security.md): these tests
# pass this checkout's own program, in a root-owned venv as the suite runs it.
def generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([npq(), "generate", *args, "--executable", npq()],
                          capture_output=True, text=True, timeout=120, check=False)


def test_planted_manifest_deletes_nothing(tmp_path: Path) -> None:
    config, out = tmp_path / "c.yaml", tmp_path / "out"
    config.write_text(CONFIG)
    victims = [tmp_path / "victim.txt", tmp_path / "abs-victim.txt"]
    for victim in victims:
        victim.write_text(f"# {MARKER}\n")
    digest = hashlib.sha256(victims[0].read_bytes()).hexdigest()
    (out / MANIFEST).parent.mkdir(parents=True)
    (out / MANIFEST).write_text(f"# {MARKER}\n{digest}  ../victim.txt\n"
                                f"{digest}  {victims[1]}\n")
    result = generate(str(config), "--out", str(out))
    assert result.returncode == 4, result.stderr
    assert "nothing was changed" in result.stderr
    assert all(v.exists() for v in victims)
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["generated.sha256"]


def test_include_into_unwritable_directory_writes_no_tree(tmp_path: Path) -> None:
    config, out, etc = tmp_path / "c.yaml", tmp_path / "out", tmp_path / "etc-nix"
    config.write_text(CONFIG)
    etc.mkdir()
    (etc / "nix.conf").write_text("substituters =\n")
    if subprocess.run(["chattr", "+i", str(etc)], check=False).returncode != 0:
        pytest.skip("chattr +i does not work here (needs root on ext4/xfs/btrfs)")
    try:
        result = generate(str(config), "--out", str(out), "--include-into",
                          str(etc / "nix.conf"))
    finally:
        subprocess.run(["chattr", "-i", str(etc)], check=True)
    assert result.returncode == 4, result.stderr
    assert "cannot include into" in result.stderr
    assert not out.exists() or not any(out.rglob("*"))
    assert (etc / "nix.conf").read_text() == "substituters =\n"
    assert sorted(p.name for p in etc.iterdir()) == ["nix.conf"]
