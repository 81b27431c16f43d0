"""Run Nix commands asynchronously: argv lists (never a shell), a deadline, and a clean kill.

Each command runs in its own session so a timeout or a cancelled task kills the whole
process group: `nix copy` to ssh stores starts ssh children that would otherwise outlive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# After SIGTERM, how long a command may take to exit before it gets SIGKILL.
KILL_GRACE = 5.0


@dataclass(frozen=True)
class CmdResult:
    argv: tuple[str, ...]
    returncode: int  # negative: killed by that signal
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def nix_program(name: str, nix_bin_dir: str | None) -> str:
    """`nix`, `nix-store`, ... from `nix.nix_bin_dir` if configured, else from PATH."""
    return str(Path(nix_bin_dir) / name) if nix_bin_dir else name


def nix_argv(nix_bin_dir: str | None, *args: str) -> list[str]:
    """`nix ARGS` with the `nix` command enabled: Debian's Nix 2.8 ships it experimental, and
    the daemon must not depend on the host's nix.conf turning it on."""
    return [nix_program("nix", nix_bin_dir), "--extra-experimental-features", "nix-command",
            *args]


async def run(argv: Sequence[str], *, env: Mapping[str, str], timeout: float,
              stdin: str | None = None) -> CmdResult:
    """Run argv to completion or until `timeout` seconds pass (then kill it)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
    )
    data = stdin.encode() if stdin is not None else None
    try:
        out, err = await asyncio.wait_for(proc.communicate(data), timeout=max(timeout, 0.001))
    except TimeoutError:
        log.warning("%s timed out after %.0f s; killing it", argv[0], timeout)
        out, err = await _kill(proc)
        return CmdResult(tuple(argv), proc.returncode or -signal.SIGKILL,
                         out.decode(errors="replace"), err.decode(errors="replace"), True)
    except asyncio.CancelledError:
        # The worker is stopping: the child must not outlive the task that owns it.
        await asyncio.shield(_kill(proc))
        raise
    return CmdResult(tuple(argv), proc.returncode if proc.returncode is not None else -1,
                     out.decode(errors="replace"), err.decode(errors="replace"))


async def _kill(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    _signal_group(proc, signal.SIGTERM)
    try:
        return await asyncio.wait_for(_drain(proc), timeout=KILL_GRACE)
    except TimeoutError:
        _signal_group(proc, signal.SIGKILL)
        # A grandchild in its own session could hold the pipes open: do not wait on them.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=KILL_GRACE)
        return b"", b""


async def _drain(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    out = await proc.stdout.read() if proc.stdout else b""
    err = await proc.stderr.read() if proc.stderr else b""
    await proc.wait()
    return out, err


def _signal_group(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
