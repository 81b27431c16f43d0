"""runner.run's children die with the process that started them, even by SIGKILL (real
processes: a parent interpreter running runner.run, killed with -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nix_push_queue.nix import runner

PARENT = """
import asyncio, os, sys
from nix_push_queue.nix import runner
async def main():
    task = asyncio.create_task(runner.run(["sleep", "300"], env=os.environ, timeout=300))
    await asyncio.sleep(0.5)
    print("started", flush=True)
    await task
asyncio.run(main())
"""


def _children_named(ppid_chain_root: int, name: str) -> list[int]:
    """Processes called `name` whose session leader descends from nothing alive: found by
    their command line and the marker environment variable."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if cmd[:1] == [name.encode()] and f"NPQ_RUNNER_TEST={ppid_chain_root}".encode() in env:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_children_die_with_a_sigkilled_parent() -> None:
    marker = str(os.getpid())
    env = {**os.environ, "NPQ_RUNNER_TEST": marker}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "started"
        children = _children_named(int(marker), "sleep")
        assert len(children) == 1, children
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _children_named(int(marker), "sleep") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _children_named(int(marker), "sleep") == [], "the child outlived its parent"
    finally:
        parent.kill()
        for pid in _children_named(int(marker), "sleep"):
            os.kill(pid, signal.SIGKILL)


def test_missing_program_raises_like_exec() -> None:
    with pytest.raises(FileNotFoundError):
        runner.dying_with_us(["no-such-program-npq"], {"PATH": "/nonexistent"})


def test_wrapped_command_keeps_output_and_status() -> None:
    import asyncio

    result = asyncio.run(runner.run(["sh", "-c", "echo out; echo err >&2; exit 3"],
                                    env=os.environ, timeout=30))
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
