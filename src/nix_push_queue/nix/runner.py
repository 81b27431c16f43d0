"""Run Nix commands asynchronously: argv lists (never a shell), a deadline, and a clean kill.

Each command runs in its own session so a timeout or a cancelled task kills the whole
process group: `nix copy` to ssh stores starts ssh children that would otherwise outlive it.

And each dies with the process that started it, even when that process is killed with
SIGKILL and nothing of ours runs: on Linux a small wrapper (a bare interpreter, ~15 ms) sets
PR_SET_PDEATHSIG to SIGKILL and then execs the command. A preexec_fn could call prctl too,
but it runs between fork and exec in a process with threads (the daemon's offloaded SQLite
calls), where taking a lock another thread held at the fork deadlocks the child. Nix itself
starts its own children (ssh) with the same death signal. Under systemd, KillMode=
control-group stops whatever is left in the unit's cgroup as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import priority

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


# argv: [interpreter, -I, -S, -c, this, parent pid, nice, ioprio_set's number or 0, ioprio, CPUs
# ("0,2,3"; "" leaves them), program path, command...]. 1 = PR_SET_PDEATHSIG and 9 = SIGKILL on
# every Linux architecture. The parent may have died before prctl took effect: then the parent pid
# has changed and the command is not started. The child also lowers its own CPU and IO priority
# (nix/priority.py): only ever lower, so a unit's Nice= stays as it is. Not its session's
# autogroup: see nix/priority.py for why.
_DIE_WITH_PARENT = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(1, 9, 0, 0, 0) != 0:
    sys.stderr.write("nix-push-queue: prctl(PR_SET_PDEATHSIG) failed\\n")
if os.getppid() != int(sys.argv[1]):
    os._exit(137)
try:
    if os.getpriority(os.PRIO_PROCESS, 0) < int(sys.argv[2]):
        os.setpriority(os.PRIO_PROCESS, 0, int(sys.argv[2]))
except OSError as exc:
    sys.stderr.write(f"nix-push-queue: setpriority: {exc}\\n")
if int(sys.argv[3]) and libc.syscall(int(sys.argv[3]), 1, 0, int(sys.argv[4])) != 0:
    sys.stderr.write("nix-push-queue: ioprio_set failed\\n")
if sys.argv[5]:
    try:
        os.sched_setaffinity(0, [int(c) for c in sys.argv[5].split(",")])
    except OSError as exc:
        sys.stderr.write(f"nix-push-queue: sched_setaffinity: {exc}\\n")
try:
    os.execv(sys.argv[6], sys.argv[7:])
except OSError as exc:
    sys.stderr.write(f"{sys.argv[7]}: {exc}\\n")
    os._exit(127)
"""


# The daemon's CPU share (nix/priority.CpuShare), set once at its start; None elsewhere (the
# CLI, tests): children then run on every CPU.
_cpus: priority.CpuShare | None = None


def share_cpus(share: priority.CpuShare | None) -> None:
    global _cpus  # noqa: PLW0603 (one per process, like the signal handlers)
    _cpus = share


def dying_with_us(argv: Sequence[str], env: Mapping[str, str],
                  cpus: set[int] | None = None) -> list[str]:
    """`argv` wrapped so that the command dies when this process does, runs at low CPU and
    IO priority and, if given, on `cpus` only (Linux; elsewhere unchanged).
    FileNotFoundError, as exec would raise it, when the program is missing."""
    program = shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if program is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
    if not sys.platform.startswith("linux") or not sys.executable:
        return list(argv)
    lowered = (str(priority.NICE), str(priority.ioprio_syscall() or 0),
               str(priority.ioprio_idle()))
    on = ",".join(map(str, sorted(cpus))) if cpus else ""
    return [sys.executable, "-I", "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), *lowered,
            on, program, *argv]


async def run(argv: Sequence[str], *, env: Mapping[str, str], timeout: float,
              stdin: str | None = None) -> CmdResult:
    """Run argv to completion or until `timeout` seconds pass (then kill it)."""
    share = _cpus
    proc = await asyncio.create_subprocess_exec(
        *dying_with_us(argv, env, share.cpus() if share is not None else None),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
    )
    if share is None:
        return await _finish(proc, argv, stdin, timeout)
    share.started(proc.pid)  # so that it moves off the builds' CPUs when builds start
    try:
        return await _finish(proc, argv, stdin, timeout)
    finally:
        share.ended(proc.pid)


async def _finish(proc: asyncio.subprocess.Process, argv: Sequence[str], stdin: str | None,
                  timeout: float) -> CmdResult:
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
