"""One daemon per state directory: an exclusive lock taken before anything touches the queue.

A second `nix-push-queue daemon` on the same state directory used to put the running one's
in-flight rows back to pending and ingest the spool before it failed on the socket, and the
running daemon then uploaded those rows twice (issue 22). Now the second one stops at the
lock. `flock` on `<state_dir>/daemon.lock`: the kernel drops it when the holder dies, however
it dies, so a kill -9 leaves no stale lock behind. The file holds the holder's pid, for the
message only.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ..errors import DaemonError

LOCK_NAME = "daemon.lock"


class StateLock:
    """Held from `acquire` until `release` (or the process ends)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Raises DaemonError naming the holder when another process has the lock."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DaemonError(f"cannot open the lock {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DaemonError(f"cannot lock {self.path}: {exc.strerror}") from exc
            raise DaemonError(
                f"another nix-push-queue daemon{holder} is running on the state directory "
                f"{self.path.parent} (it holds {self.path}); stop it first, or give this one "
                "its own queue.state_dir") from exc
        try:  # for the message only: a full disk must not keep the daemon from starting
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
