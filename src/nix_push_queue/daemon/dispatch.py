"""One decoded request to one reply: the daemon's control ops over the queue.

Knows nothing about connections. Every failure becomes an ErrorReply: a ProtocolError is the
peer's fault (its code goes back), anything else is ours ("internal", logged with its
traceback) and the daemon keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from ..errors import ProtocolError, QueueError, QueueFull
from ..nix import storepath
from ..wire.protocol import (
    RATE_WINDOW,
    ChangedReply,
    DropRequest,
    EnqueueReply,
    EnqueueRequest,
    ErrorCode,
    ErrorReply,
    OkReply,
    PingRequest,
    ProgressReply,
    ProgressRequest,
    Reply,
    Request,
    RetryRequest,
    SpoolStats,
    StatusReply,
    StatusRequest,
    TargetStats,
    decode_request,
)
from .filters import excluded
from .intake import Intake

log = logging.getLogger(__name__)

Offload = Callable[..., Awaitable[Any]]


class DispatchMetrics(Protocol):
    def request_handled(self, op: str, result: str) -> None: ...


class Dispatcher:
    def __init__(self, intake: Intake, *, notify: Callable[[], None],
                 metrics: DispatchMetrics | None = None,
                 spool_stats: Callable[[], SpoolStats] | None = None,
                 trust: Callable[[], tuple[str, ...] | None] | None = None,
                 offload: Offload = asyncio.to_thread) -> None:
        self._intake = intake
        self._spool_stats = spool_stats
        self._trust = trust
        self._notify = notify
        self._metrics = metrics
        self._offload = offload

    async def handle_line(self, line: bytes) -> Reply:
        op = "?"
        try:
            request = decode_request(line)
            op = request.op
            reply = await self.handle(request)
        except ProtocolError as exc:
            log.warning("bad %s request: %s (%s)", op, exc, exc.code)
            reply = ErrorReply(_code(exc.code), str(exc))
        except QueueError as exc:
            # The database refused (disk full, locked): one line, not a traceback per hook.
            log.error("%s request failed: %s", op, exc)
            reply = ErrorReply("internal", str(exc)[:500])
        except Exception as exc:
            # The daemon keeps serving; the peer learns that it was our fault, not theirs.
            log.exception("%s request failed", op)
            reply = ErrorReply("internal", f"{type(exc).__name__}: {exc}"[:500])
        if self._metrics is not None:
            self._metrics.request_handled(op, "error" if isinstance(reply, ErrorReply)
                                          else "ok")
        return reply

    async def handle(self, request: Request) -> Reply:
        intake, store = self._intake, self._intake.store
        match request:
            case EnqueueRequest():
                reply: Reply = await self._offload(intake.enqueue, request.paths,
                                                   request.source, request.drv,
                                                   request.force)
                if isinstance(reply, EnqueueReply) and reply.queued:
                    self._notify()
                return reply
            case StatusRequest():
                status: StatusReply = await self._offload(self._status)
                return status
            case RetryRequest():
                self._check_target(request.target)
                changed = await self._offload(store.retry_dead, request.target,
                                              request.paths, intake.now())
                if changed:
                    log.info("retry: %d dead letter(s) back to pending", changed)
                    self._notify()
                return ChangedReply(changed)
            case DropRequest():
                return await self._drop(request)
            case PingRequest():
                return OkReply()
            case ProgressRequest():
                progress: ProgressReply = await self._offload(self._progress, request)
                return progress
        raise ProtocolError(f"unhandled op {request.op!r}")

    async def _drop(self, request: DropRequest) -> ChangedReply:
        store = self._intake.store
        if request.orphaned:
            changed: int = await self._offload(store.drop_orphaned)
            if changed:
                log.info("drop: %d row(s) of targets no longer configured deleted", changed)
            return ChangedReply(changed)
        self._check_target(request.target)
        changed = await self._offload(store.drop_dead, request.target, request.paths)
        if changed:
            log.info("drop: %d dead letter(s) deleted", changed)
        return ChangedReply(changed)

    def _status(self) -> StatusReply:
        """The spool is counted before the queue is read: a file ingested in between has
        its rows committed before it is unlinked, so it is seen in one or the other, and a
        `wait` cannot pass while paths sit in the spool."""
        spool = self._spool_stats() if self._spool_stats is not None else None
        intake = self._intake
        now = intake.now()
        stats = intake.store.stats(now, intake.targets)
        rates = intake.store.throughput(now, RATE_WINDOW)
        full = _waiting_for_space(intake.store.full_since, str(intake.store.path))
        return StatusReply({name: _with_rate(replace(s, unsupported=intake.unsupported.get(name),
                                                     **full, **_transport(intake, name)),
                                             rates.get(name))
                            for name, s in stats.items()}, spool,
                           self._trust() if self._trust is not None else None)

    def _progress(self, request: ProgressRequest) -> ProgressReply:
        """Where the asked-for paths stand; the spool is counted first, as in `_status`."""
        intake = self._intake
        for path in request.paths:
            problem = storepath.problem(path, intake.store_dir)
            if problem is not None:
                raise ProtocolError(f"{path[:300]!r}: {problem}", "bad_path", "paths")
        spool = self._spool_stats() if self._spool_stats is not None else SpoolStats()
        if request.prioritize:
            # Best effort: a full disk must not fail a waiter (the marks only reorder work).
            with contextlib.suppress(QueueFull):
                intake.store.prioritize(request.paths)
        found = intake.store.path_progress(request.paths, intake.targets,
                                           lambda p: excluded(p, intake.exclude))
        # A derivation still to resolve may name missing paths, as a spool file may.
        return ProgressReply(found, spool.pending + intake.store.unresolved(), spool.error)

    def _check_target(self, target: str | None) -> None:
        if target is not None and target not in self._intake.targets:
            known = ", ".join(self._intake.targets) or "none"
            raise ProtocolError(f"unknown target {target[:80]!r} (known: {known})",
                                field="target")


def _transport(intake: Intake, name: str) -> dict[str, Any]:
    """The target's transport and why, and what its staged files hold (boto3 S3 targets)."""
    staged = intake.staging is not None and intake.transports.get(name, "").startswith("boto3")
    return {"transport": intake.transports.get(name),
            "staging_bytes": intake.staging(name) if staged and intake.staging else 0,
            "staging_max_bytes": intake.staging_max if staged else None}


def _waiting_for_space(since: float | None, db: str) -> dict[str, Any]:
    """While the disk refuses the queue's writes, every target's last error says so: the
    daemon holds its rows and resumes by itself (the full-disk rule, batch.py)."""
    if since is None:
        return {}
    return {"last_error": f"the queue's disk is full ({db}): waiting for space; rows are "
                          "held and uploads resume by themselves once there is room",
            "last_error_at": since}


def _with_rate(stats: TargetStats, rate: tuple[int, int, int, int] | None) -> TargetStats:
    nbytes, unsized, paths, recent = rate or (0, 0, 0, 0)
    return replace(stats, bytes_pending=nbytes, unsized_pending=unsized, recent_paths=paths,
                   recent_bytes=recent)


def _code(code: str) -> ErrorCode:
    match code:
        case "bad_request" | "too_large" | "bad_version" | "bad_path":
            return code
    return "internal"
