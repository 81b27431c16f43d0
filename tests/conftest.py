"""Shared fixtures. Real tools wherever one runs here: each test gets its own Nix store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nix_push_queue.nixenv import IsolatedNix

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def nix(tmp_path: Path) -> IsolatedNix:
    """A fresh single-user Nix (store, state, config) under this test's tmp_path."""
    if shutil.which("nix-build") is None:
        pytest.fail("Nix is not installed; run scripts/test, which installs it")
    return IsolatedNix.create(tmp_path / "nix")


@pytest.fixture
def repo() -> Path:
    return REPO
