"""Intake tells the CPU share (nix/priority.CpuShare) that builds run only for a request that
names a build's outputs: a hook's or a spool entry's, and only once it is valid."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nix_push_queue.daemon.intake import Intake
from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.errors import ProtocolError

STORE = "/nix/store"


def sp(i: int) -> str:
    return f"{STORE}/{i:032d}-p"


def test_only_a_valid_build_request_reserves_cpus(tmp_path: Path) -> None:
    seen: list[str] = []
    intake = Intake(QueueStore(tmp_path / "q.sqlite"), STORE, ("a",), (), time.time,
                    build_seen=lambda: seen.append("build"))
    with pytest.raises(ProtocolError):
        intake.enqueue(["/tmp/not-a-store-path"], "hook")
    with pytest.raises(ProtocolError):
        intake.enqueue([sp(1)], "hook", drv=sp(2))  # DRV_PATH not a .drv
    assert seen == []
    intake.enqueue([sp(3)], "push")
    assert seen == []  # a person's push is not a build
    intake.enqueue([sp(4)], "hook")
    intake.enqueue([sp(5)], "spool")
    assert seen == ["build", "build"]
