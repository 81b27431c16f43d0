"""The state directory's lock: a second holder is refused and named; a released or dead
holder leaves no stale lock (flock dies with its descriptor)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nix_push_queue.daemon.statelock import StateLock
from nix_push_queue.errors import DaemonError


def test_second_lock_is_refused_until_the_first_is_released(tmp_path: Path) -> None:
    first = StateLock(tmp_path)
    first.acquire()
    with pytest.raises(DaemonError, match=rf"daemon \(pid {os.getpid()}\) is running on the "
                                          rf"state directory {tmp_path}"):
        StateLock(tmp_path).acquire()
    first.release()
    second = StateLock(tmp_path)
    second.acquire()
    second.release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = (f"import os, sys; sys.path[:0] = {sys.path!r}\n"
            "from nix_push_queue.daemon.statelock import StateLock\n"
            f"StateLock({str(tmp_path)!r}).acquire(); print('held', flush=True)\n"
            "os.kill(os.getpid(), 9)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.stdout == "held\n" and proc.returncode == -9
    lock = StateLock(tmp_path)
    lock.acquire()
    lock.release()
