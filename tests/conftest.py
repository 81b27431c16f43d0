"""Shared fixtures. Real tools wherever one runs here: each test gets its own Nix store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from nix_push_queue.nix.isolated import IsolatedNix

# CI (CI=true) replays the same examples every run, so a red build is reproducible and never a
# coin toss; developers get fresh random examples. The conftest reads the environment because
# pytest's own option machinery has no place for it.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent

# Shared fixtures live one module per subject in tests/fixtures/ (nginx, sshd, daemon, ...);
# every module there is loaded as a plugin, so adding one needs no edit here.
pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)


@pytest.fixture
def nix(tmp_path: Path) -> IsolatedNix:
    """A fresh single-user Nix (store, state, config) under this test's tmp_path."""
    if shutil.which("nix-build") is None:
        pytest.fail("Nix is not installed; run scripts/test, which installs it")
    return IsolatedNix.create(tmp_path / "nix")


@pytest.fixture
def repo() -> Path:
    return REPO
