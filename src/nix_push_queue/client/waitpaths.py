"""Wait for given paths (`push --wait`, `wait --paths`): done when each of them is on every
target (uploaded, served by an upstream cache, or excluded by filters), not when the whole
queue is empty. Each poll marks their rows so the daemon uploads them before its backlog.

A path that went dead, left the store (gone) or is in no queue row (missing) fails the wait,
once nothing else of the set is still moving, so one bad path does not hide the others'
outcome. Missing paths are waited for while the daemon's spool still holds files: they may
be in one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from ..errors import (
    DaemonUnavailable,
    DeadLetters,
    NotQueued,
    PathsLost,
    ProtocolError,
    WaitTimeout,
)
from ..wire import framing
from ..wire.progress import PathProblem, ProgressReply, ProgressRequest, merge
from .control import ControlClient

OnPoll = Callable[[ProgressReply], None]


def path_progress(client: ControlClient, paths: Sequence[str], *, prioritize: bool = False,
                  timeout: float | None = None) -> ProgressReply:
    """One `progress` request per chunk of paths that fits a message, merged. `timeout`
    bounds each request (default: the client's)."""
    parts = []
    for chunk in framing.split_paths(list(dict.fromkeys(paths))) if paths else [[]]:
        reply = client.request(ProgressRequest(tuple(chunk), prioritize), timeout)
        if not isinstance(reply, ProgressReply):
            raise ProtocolError("the daemon sent no progress")
        parts.append(reply)
    return merge(parts)


def moving(reply: ProgressReply) -> int:
    """Rows of the set still to settle: pending or uploading, or missing while the spool
    still holds files that may queue them."""
    spool_busy = reply.spool_pending > 0 or reply.spool_error is not None
    return sum(p.outstanding + (p.missing if spool_busy else 0)
               for p in reply.targets.values())


def wait_paths(client: ControlClient, paths: Sequence[str], *, timeout: float | None,
               poll: float = 0.5, on_poll: OnPoll | None = None,
               targets: Collection[str] | None = None) -> ProgressReply:
    """Block until none of `paths` is pending or uploading on any target (of `targets`
    only, when given). Raises WaitTimeout; DeadLetters, PathsLost or NotQueued naming each
    failed path."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        reply = _poll(client, paths, deadline, timeout)
        if targets is not None:
            reply = replace(reply, targets={n: p for n, p in reply.targets.items()
                                            if n in targets})
        if on_poll is not None:
            on_poll(reply)
        left = moving(reply)
        if left == 0:
            break
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(f"after {timeout:g} s: {left} of {len(set(paths))} path(s) x "
                              f"{len(reply.targets)} target(s) still pending or uploading"
                              + _spool_note(reply))
        time.sleep(poll)
    raise_failures(reply)
    return reply


def _poll(client: ControlClient, paths: Sequence[str], deadline: float | None,
          timeout: float | None) -> ProgressReply:
    """One poll that cannot outlast the deadline by much (a daemon behind a locked
    database answers late; `--timeout` must still return)."""
    if deadline is None:
        return path_progress(client, paths, prioritize=True)
    try:
        return path_progress(client, paths, prioritize=True,
                             timeout=max(deadline - time.monotonic(), 1.0))
    except DaemonUnavailable as exc:
        if time.monotonic() < deadline:
            raise
        raise WaitTimeout(f"after {timeout:g} s: the daemon did not answer in time ({exc})"
                          ) from exc


def _spool_note(reply: ProgressReply) -> str:
    if reply.spool_error is not None:
        return f"; the daemon cannot read its spool: {reply.spool_error}"
    if reply.spool_pending:
        return f"; {reply.spool_pending} spool file(s) not ingested"
    return ""


def raise_failures(reply: ProgressReply) -> None:
    """Name every failed path with its target and last error. Dead letters take the exit
    code when there are any (they need `retry` or `drop`), then lost, then not queued."""
    failed = [(name, x) for name, p in sorted(reply.targets.items()) for x in p.problems]
    if not failed:
        return
    counts = {kind: sum(getattr(p, kind) for p in reply.targets.values())
              for kind in ("dead", "gone", "missing")}
    total = sum(counts.values())
    lines = [_problem_line(name, x) for name, x in failed]
    if total > len(failed):
        lines.append(f"  ... and {total - len(failed)} more (see `nix-push-queue status`)")
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
    text = f"{total} path(s) did not reach every target ({summary}):\n" + "\n".join(lines)
    if counts["dead"]:
        raise DeadLetters(text + "\nfix the cause, then `nix-push-queue retry` (or push "
                          "again), or `drop` to give them up")
    if counts["gone"]:
        raise PathsLost(text + "\nrebuild and push them; `nix-push-queue drop` acknowledges "
                        "the loss")
    raise NotQueued(text + "\npush them first (`nix-push-queue push PATH...`)")


def _problem_line(target: str, problem: PathProblem) -> str:
    return f"  {target}: {problem.path}: {problem.state}: {problem.error or '-'}"
