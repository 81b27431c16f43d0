"""The wire protocol between clients (hook, push, status, ...) and the daemon. No I/O.

Unix stream socket, one JSON object per `\\n`-terminated UTF-8 line, every message carries
`"v": 1`. See docs/protocol.md. Decoding is strict about types and limits and raises only
errors.ProtocolError, whose `code` is what the daemon sends back; unknown extra fields are
ignored so a newer client can talk to an older daemon within one version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..errors import ProtocolError
from . import progress, stats
from .fields import get_bool, get_int, get_paths, get_str, load_line
from .framing import MAX_DEPTH, MAX_LINE, MAX_PATHS, VERSION
from .progress import ProgressReply, ProgressRequest
from .stats import RATE_WINDOW, SpoolStats, TargetStats

__all__ = [
    "MAX_DEPTH",
    "MAX_LINE",
    "MAX_PATHS",
    "RATE_WINDOW",
    "VERSION",
    "ChangedReply",
    "DropRequest",
    "EnqueueReply",
    "EnqueueRequest",
    "ErrorReply",
    "OkReply",
    "PingRequest",
    "ProgressReply",
    "ProgressRequest",
    "RetryRequest",
    "SpoolStats",
    "StatusReply",
    "StatusRequest",
    "TargetStats",
    "decode_reply",
    "decode_request",
    "encode",
]

Op = Literal["enqueue", "status", "retry", "drop", "ping", "progress"]
Source = Literal["hook", "push", "spool"]
ErrorCode = Literal["bad_request", "too_large", "bad_version", "bad_path", "internal"]
OPS: tuple[str, ...] = get_args(Op)
SOURCES: tuple[str, ...] = get_args(Source)
ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)


@dataclass(frozen=True)
class EnqueueRequest:
    paths: tuple[str, ...]
    source: Source = "push"
    drv: str | None = None
    # Queue again even where the row says done (push --force); without it a done row is
    # queued again only when its target lacks the path (issue 22).
    force: bool = False
    op: Literal["enqueue"] = field(default="enqueue", init=False)


@dataclass(frozen=True)
class StatusRequest:
    op: Literal["status"] = field(default="status", init=False)


@dataclass(frozen=True)
class RetryRequest:
    """Dead letters back to pending; None means every target / every dead path."""

    target: str | None = None
    paths: tuple[str, ...] | None = None
    op: Literal["retry"] = field(default="retry", init=False)


@dataclass(frozen=True)
class DropRequest:
    target: str | None = None
    paths: tuple[str, ...] | None = None
    orphaned: bool = False  # every row of targets no longer configured, instead
    op: Literal["drop"] = field(default="drop", init=False)


@dataclass(frozen=True)
class PingRequest:
    op: Literal["ping"] = field(default="ping", init=False)


Request = (EnqueueRequest | StatusRequest | RetryRequest | DropRequest | PingRequest
           | ProgressRequest)


@dataclass(frozen=True)
class OkReply:
    """The reply to `ping`."""


@dataclass(frozen=True)
class EnqueueReply:
    queued: int  # rows created (or revived from dead)
    skipped: int  # paths not queued: already queued, or excluded by filters


@dataclass(frozen=True)
class StatusReply:
    targets: Mapping[str, TargetStats]
    spool: SpoolStats | None = None  # None: a daemon that does not report it
    # The trust check's lines (summary, problems, notes: docs/security.md); None: not run yet
    trust: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ChangedReply:
    """The reply to `retry` and `drop`."""

    changed: int


@dataclass(frozen=True)
class ErrorReply:
    error: ErrorCode
    message: str


Reply = OkReply | EnqueueReply | StatusReply | ChangedReply | ErrorReply | ProgressReply
Message = Request | Reply
_REPLY_TYPES = (OkReply, EnqueueReply, StatusReply, ChangedReply, ErrorReply, ProgressReply)


def _request_json(msg: Request) -> dict[str, Any]:
    out: dict[str, Any] = {"op": msg.op}
    match msg:
        case EnqueueRequest():
            out.update(paths=list(msg.paths), source=msg.source)
            if msg.drv is not None:
                out["drv"] = msg.drv
            if msg.force:
                out["force"] = True
        case RetryRequest() | DropRequest():
            if msg.target is not None:
                out["target"] = msg.target
            if msg.paths is not None:
                out["paths"] = list(msg.paths)
            if isinstance(msg, DropRequest) and msg.orphaned:
                out["orphaned"] = True
        case ProgressRequest():
            out.update(progress.request_json(msg))
    return out


def _reply_json(msg: Reply) -> dict[str, Any]:
    match msg:
        case ErrorReply():
            return {"ok": False, "error": msg.error, "message": msg.message}
        case EnqueueReply():
            return {"ok": True, "queued": msg.queued, "skipped": msg.skipped}
        case StatusReply():
            targets = {name: stats.target_json(s) for name, s in msg.targets.items()}
            out: dict[str, Any] = {"ok": True, "targets": targets}
            if msg.spool is not None:
                out["spool"] = stats.spool_json(msg.spool)
            if msg.trust is not None:
                out["trust"] = list(msg.trust)
            return out
        case ChangedReply():
            return {"ok": True, "changed": msg.changed}
        case ProgressReply():
            return progress.reply_json(msg)
    return {"ok": True}


def encode(msg: Message) -> bytes:
    """One message as a line. Raises ProtocolError (too_large) past MAX_LINE."""
    body = _reply_json(msg) if isinstance(msg, _REPLY_TYPES) else _request_json(msg)
    line = json.dumps({"v": VERSION, **body}, separators=(",", ":")).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise ProtocolError(f"message of {len(line)} bytes exceeds {MAX_LINE}", "too_large")
    return line


def decode_request(line: bytes) -> Request:
    """Parse one request line (with or without its newline). Raises only ProtocolError."""
    obj = load_line(line)
    op = obj.get("op")
    if op == "enqueue":
        paths = get_paths(obj)
        source = obj.get("source", "push")
        if source not in SOURCES:
            raise ProtocolError(f"field 'source' must be one of {', '.join(SOURCES)}",
                                field="source")
        return EnqueueRequest(paths or (), source, get_str(obj, "drv", optional=True),
                              get_bool(obj, "force"))
    if op == "status":
        return StatusRequest()
    if op in ("retry", "drop"):
        target, paths = get_str(obj, "target", optional=True), get_paths(obj, optional=True)
        if op == "retry":
            return RetryRequest(target, paths)
        return DropRequest(target, paths, get_bool(obj, "orphaned"))
    if op == "ping":
        return PingRequest()
    if op == "progress":
        return progress.decode_request(obj)
    if not isinstance(op, str):
        raise ProtocolError("field 'op' must be a string", field="op")
    raise ProtocolError(f"unknown op {op[:40]!r}", field="op")


def decode_reply(line: bytes, op: Op) -> Reply:
    """Parse the reply to a request of kind `op`. Raises only ProtocolError."""
    obj = load_line(line)
    ok = obj.get("ok")
    if ok is False:
        code = obj.get("error")
        return ErrorReply(code if code in ERROR_CODES else "internal",
                          get_str(obj, "message", optional=True) or "")
    if ok is not True:
        raise ProtocolError("field 'ok' must be true or false", field="ok")
    if op == "enqueue":
        return EnqueueReply(get_int(obj, "queued"), get_int(obj, "skipped"))
    if op in ("retry", "drop"):
        return ChangedReply(get_int(obj, "changed"))
    if op == "status":
        return StatusReply(stats.decode_targets(obj.get("targets")),
                           stats.decode_spool(obj.get("spool")),
                           _lines(obj.get("trust"), "trust"))
    if op == "progress":
        return progress.decode_reply(obj)
    return OkReply()


def _lines(value: object, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"field '{key}' must be a list of strings", field=key)
    return tuple(value)
