"""Every example in schema/examples/ validates through the real CLI, in all three formats."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]
EXAMPLES = sorted((REPO / "schema/examples").iterdir())


def npq(*args: object) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("nix-push-queue") or str(Path(sys.executable).parent / "nix-push-queue")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120,
                          check=False)


def test_examples_cover_every_format_and_are_documented() -> None:
    assert {e.suffix for e in EXAMPLES} == {".yaml", ".json", ".nix"}
    readme = (REPO / "schema/README.md").read_text()
    for example in EXAMPLES:
        assert f"examples/{example.name}" in readme, example.name


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(example: Path) -> None:
    result = npq("validate", example)
    # s3 targets get a warning where this Nix has no S3 (or no AWS authentication):
    # tests/integration/test_s3_support.py checks those.
    errors = [line for line in result.stderr.splitlines()
              if not (": warning: " in line and "targets[0]" in line)]
    assert (result.returncode, errors) == (0, [])
    assert result.stdout.startswith(f"{example}: ok")
    filled = npq("validate", "--print", example)
    document = json.loads(filled.stdout)
    assert document["version"] == 1 and "queue" in document  # defaults filled in


def test_s3_example_is_the_manuals(tmp_path: Path) -> None:
    document = json.loads(npq("validate", "--print", REPO / "schema/examples/s3-manual.yaml")
                          .stdout)
    (target,) = document["targets"]
    assert target["url"] == "s3://example-nix-cache"
    assert target["public_key"].startswith("example-nix-cache-1:")
    assert target["secret_key_file"] == "/etc/nix/key.private"
