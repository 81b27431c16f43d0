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
    if not p.stem.startswith("_")  # _helpers.py: plain modules the fixtures share
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


# Tests that run real Nix carry the `nix` marker, so the Nix version matrix (scripts/test,
# tests/matrix) runs them once per Nix and the host leg leaves them out: every test in
# tests/integration, and every test whose fixtures reach an isolated Nix.
INTEGRATION = Path(__file__).parent / "integration"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "nix" in getattr(item, "fixturenames", ()) or item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.nix)
