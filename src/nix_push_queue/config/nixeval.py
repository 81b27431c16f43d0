"""Running nix-instantiate on a config, bounded in time and output, never leaving it behind.

A `.nix` config is a program: it may loop for ever or print gigabytes. nix-instantiate runs
in its own process group (it may start children: fetchers, builds for import-from-derivation)
with PR_SET_PDEATHSIG, so it dies with us even on SIGKILL, and limited to EVAL_MEMORY of
address space (Nix's collector then fails with "out of memory"); on timeout, on SIGTERM, SIGHUP or
SIGINT of `validate`, and when its output passes MAX_BYTES, the whole group is killed before
we return or exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import FrameType

from .limits import EVAL_MEMORY, MAX_BYTES

_PR_SET_PDEATHSIG = 1
_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


@dataclass(frozen=True)
class EvalResult:
    returncode: int
    stdout: bytes
    stderr: bytes
    problem: str | None  # "timed out after 30 s", "printed more than ...": killed by us


_LIBC = ctypes.CDLL(None, use_errno=True)


def _child_setup() -> None:
    # Runs in the child between fork and exec: libc was loaded before the fork.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    resource.setrlimit(resource.RLIMIT_AS, (EVAL_MEMORY, EVAL_MEMORY))


class _Signalled(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP/SIGINT into an exception, so `finally` kills the group; then let
    the signal do what it would have done (exit by it) once the group is gone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise _Signalled(signum)

    old = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield
    except _Signalled as caught:
        for s, h in old.items():
            signal.signal(s, h)
        if caught.signum == signal.SIGINT:
            raise KeyboardInterrupt from None
        os.kill(os.getpid(), caught.signum)
        raise SystemExit(128 + caught.signum) from None  # the handler was not the default
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_bounded(argv: Sequence[str], *, timeout: float) -> EvalResult:
    """Run `argv` to completion or until `timeout` / MAX_BYTES of output; raises OSError when
    it cannot start."""
    with _signals_raise():
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                # Configs are read before any thread starts.
                                preexec_fn=_child_setup)  # noqa: PLW1509
        try:
            return _collect(proc, timeout)
        finally:
            _kill_group(proc)


def _collect(proc: subprocess.Popen[bytes], timeout: float) -> EvalResult:
    deadline = time.monotonic() + timeout
    out: dict[int, list[bytes]] = {}
    total = 0
    problem = None
    with selectors.DefaultSelector() as sel:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                sel.register(pipe, selectors.EVENT_READ)
                out[pipe.fileno()] = []
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                problem = f"did not finish within {timeout:g} s"
                break
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                out[key.fd].append(chunk)
                total += len(chunk)
            if total > MAX_BYTES:
                problem = f"printed more than {MAX_BYTES // 1024} KiB"
                break
    if problem is None:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # closed its output but goes on running
            problem = f"did not finish within {timeout:g} s"
    stdout, stderr = (b"".join(out.get(p.fileno(), [])) if p else b""
                      for p in (proc.stdout, proc.stderr))
    return EvalResult(proc.returncode if problem is None else -9, stdout, stderr, problem)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The group outlives its leader while a child of it runs: kill it whether or not the
    # leader already exited (Linux reuses no pid that is still some group's id).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
