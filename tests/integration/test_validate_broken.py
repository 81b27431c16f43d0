"""Every broken config in tests/data/broken/ fails with the line and field its first line
names, through the real CLI (YAML and JSON parsed here, .nix evaluated by nix-instantiate)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nix_push_queue import cli
from nix_push_queue.nix.isolated import IsolatedNix

pytestmark = pytest.mark.integration
BROKEN = Path(__file__).parents[1] / "data/broken"
CASES = sorted(p for p in BROKEN.iterdir() if p.suffix in (".yaml", ".json", ".nix"))
EXPECT = re.compile(r"# expect: (\d+): ([^:]*): (.+)")


def npq() -> str:
    return shutil.which("nix-push-queue") or str(Path(sys.executable).parent / "nix-push-queue")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two real key pairs, a rotation (names differ only in the suffix): the placeholders of
    the corpus."""
    root = tmp_path_factory.mktemp("keys")
    nix = IsolatedNix.create(root / "nix")
    nix.generate_key("cache.example.org-1", root)
    _, public_b = nix.generate_key("cache.example.org-2", root)
    return {"@KEYS@": str(root), "@PUB_B@": public_b}


def expectation(case: Path) -> tuple[int, str, str]:
    holder = case.with_name(case.name + ".expect") if case.suffix == ".json" else case
    match = EXPECT.match(holder.read_text().partition("\n")[0])
    assert match, f"{holder}: first line must be `# expect: LINE: FIELD: message part`"
    return int(match.group(1)), match.group(2), match.group(3)


def materialize(case: Path, keys: dict[str, str], directory: Path) -> Path:
    text = case.read_text()
    for placeholder, value in keys.items():
        text = text.replace(placeholder, value)
    copy = directory / case.name
    copy.write_text(text)
    return copy


def test_corpus_is_big_and_covers_every_format() -> None:
    assert len(CASES) >= 25
    assert {c.suffix for c in CASES} == {".yaml", ".json", ".nix"}


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_broken_config_is_reported_at_its_line_and_field(
        case: Path, keys: dict[str, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    line, field, message = expectation(case)
    config = materialize(case, keys, tmp_path)
    assert cli.main(["validate", str(config)], env={}) == 1
    reported = capsys.readouterr().err.strip().splitlines()
    where = f"{config}:{line}:" + (f" {field}:" if field else "")
    assert len(reported) == 1, reported  # exactly the one mistake, nothing else
    assert reported[0].startswith(where + " "), (reported[0], where)
    assert message in reported[0]


@pytest.mark.parametrize("name", ["bad-scheme.yaml", "bad-scheme.nix", "unknown-key.json"])
def test_generate_refuses_broken_config_and_writes_nothing(tmp_path: Path, name: str) -> None:
    case = BROKEN / name
    line, field, _ = expectation(case)
    out = tmp_path / "out"
    result = subprocess.run([npq(), "generate", str(case), "--out", str(out)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"{case}:{line}: {field}: ")
    assert result.stdout == ""
    assert not out.exists()
