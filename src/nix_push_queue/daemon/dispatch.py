"""One decoded request to one reply: the daemon's control ops over the queue.

Knows nothing about connections. Every failure becomes an ErrorReply: a ProtocolError is the
peer's fault (its code goes back), anything else is ours ("internal", logged with its
traceback) and the daemon keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

from ..errors import ProtocolError
from ..wire.protocol import (
    ChangedReply,
    DropRequest,
    EnqueueReply,
    EnqueueRequest,
    ErrorCode,
    ErrorReply,
    OkReply,
    PingRequest,
    Reply,
    Request,
    RetryRequest,
    SpoolStats,
    StatusReply,
    StatusRequest,
    decode_request,
)
from .intake import Intake

log = logging.getLogger(__name__)

Offload = Callable[..., Awaitable[Any]]


class DispatchMetrics(Protocol):
    def request_handled(self, op: str, result: str) -> None: ...


class Dispatcher:
    def __init__(self, intake: Intake, *, notify: Callable[[], None],
                 metrics: DispatchMetrics | None = None,
                 spool_stats: Callable[[], SpoolStats] | None = None,
                 offload: Offload = asyncio.to_thread) -> None:
        self._intake = intake
        self._spool_stats = spool_stats
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
                                                   request.source, request.drv)
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
                self._check_target(request.target)
                changed = await self._offload(store.drop_dead, request.target, request.paths)
                if changed:
                    log.info("drop: %d dead letter(s) deleted", changed)
                return ChangedReply(changed)
            case PingRequest():
                return OkReply()
        raise ProtocolError(f"unhandled op {request.op!r}")

    def _status(self) -> StatusReply:
        """The spool is counted before the queue is read: a file ingested in between has
        its rows committed before it is unlinked, so it is seen in one or the other, and a
        `wait` cannot pass while paths sit in the spool."""
        spool = self._spool_stats() if self._spool_stats is not None else None
        intake = self._intake
        stats = intake.store.stats(intake.now(), intake.targets)
        return StatusReply({name: replace(s, unsupported=intake.unsupported.get(name))
                            for name, s in stats.items()}, spool)

    def _check_target(self, target: str | None) -> None:
        if target is not None and target not in self._intake.targets:
            known = ", ".join(self._intake.targets) or "none"
            raise ProtocolError(f"unknown target {target[:80]!r} (known: {known})",
                                field="target")


def _code(code: str) -> ErrorCode:
    match code:
        case "bad_request" | "too_large" | "bad_version" | "bad_path":
            return code
    return "internal"
