"""The VM image cache: one directory per layer and key, built atomically under a lock.

Several pytest runs may share the cache (developers run the suite side by side), so building
takes an exclusive lock per layer kind, and a layer appears under its final name only when
complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nix_push_queue.errors import NpqError

from .mirror import host_proxy, proxy_env

# Layers of a kind unused for this long are removed whenever that kind is looked up.
STALE_AFTER = 3600.0
STAMP = ".last-used"


@dataclass(frozen=True)
class Cache:
    root: Path

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{name}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def touch(self, layer: Path) -> None:
        (layer / STAMP).touch()

    def prune(self, prefix: str, keep: Path) -> None:
        now = time.time()
        for old in self.root.glob(f"{prefix}*"):
            stamp = old / STAMP
            used = stamp.stat().st_mtime if stamp.exists() else 0.0
            if old != keep and old.is_dir() and now - used > STALE_AFTER:
                shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a scratch directory that becomes `final` only if the block succeeds."""
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ImageError(NpqError):
    """A tool building a VM image failed; carries its command and the end of its output."""

    def __init__(self, argv: list[str], returncode: int, output: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        tail = "\n".join(output.strip().splitlines()[-20:])
        super().__init__(f"{' '.join(argv[:4])} ... exited {returncode}:\n{tail}")


def run_tool(argv: list[str], *, timeout: float, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          env=env)
    if proc.returncode != 0:
        raise ImageError(argv, proc.returncode, proc.stdout + proc.stderr)


def run_debootstrap(argv: list[str], root: Path) -> None:
    """Run a debootstrap command line that builds `root` (the VM image and the test matrix's
    roots both do). On failure its own message only names a log: the log's tail goes into
    the error, since that is what says what went wrong."""
    try:
        run_tool(argv, timeout=1800, env=proxy_env(host_proxy()))
    except ImageError as exc:
        details = root / "debootstrap" / "debootstrap.log"
        text = details.read_text(errors="replace") if details.exists() else ""
        raise ImageError(argv, exc.returncode, f"{exc}\n{text}") from None
