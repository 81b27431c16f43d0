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
from . import progress
from .framing import MAX_DEPTH, MAX_LINE, MAX_PATHS, VERSION, too_deep
from .progress import ProgressReply, ProgressRequest

__all__ = [
    "MAX_DEPTH",
    "MAX_LINE",
    "MAX_PATHS",
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
    op: Literal["drop"] = field(default="drop", init=False)


@dataclass(frozen=True)
class PingRequest:
    op: Literal["ping"] = field(default="ping", init=False)


Request = (EnqueueRequest | StatusRequest | RetryRequest | DropRequest | PingRequest
           | ProgressRequest)


@dataclass(frozen=True)
class TargetStats:
    """One target's queue, as `status` shows it. Ages and times are seconds (epoch for `_at`)."""

    pending: int = 0
    inflight: int = 0
    done: int = 0
    dead: int = 0
    skipped: int = 0
    oldest_pending_age: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    unsupported: str | None = None  # why the daemon's Nix cannot upload to this target
    # Rows dropped because their path left the local store before its upload (until a
    # person drops them), and rows whose GC root the cap (queue.gc_roots) released, queued
    # or lost since.
    gone: int = 0
    released: int = 0
    # NAR bytes of the pending and in-flight rows the daemon has measured (`unsized_pending`
    # rows not yet), and what was uploaded over the last RATE_WINDOW seconds.
    bytes_pending: int = 0
    unsized_pending: int = 0
    recent_paths: int = 0
    recent_bytes: int = 0


RATE_WINDOW = 60.0  # seconds of uploads `status` reports a rate over


@dataclass(frozen=True)
class SpoolStats:
    """The daemon's spool, counted when the status was asked for (before the queue was
    read, so a file ingested in between is seen in one of the two)."""

    pending: int = 0  # files not ingested yet
    quarantined: int = 0  # entries set aside: unreadable or holding invalid lines
    error: str | None = None  # the spool could not be counted


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
        case RetryRequest() | DropRequest():
            if msg.target is not None:
                out["target"] = msg.target
            if msg.paths is not None:
                out["paths"] = list(msg.paths)
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
            targets = {name: _stats_json(s) for name, s in msg.targets.items()}
            out: dict[str, Any] = {"ok": True, "targets": targets}
            if msg.spool is not None:
                out["spool"] = {"pending": msg.spool.pending,
                                "quarantined": msg.spool.quarantined,
                                "error": msg.spool.error}
            return out
        case ChangedReply():
            return {"ok": True, "changed": msg.changed}
        case ProgressReply():
            return progress.reply_json(msg)
    return {"ok": True}


def _stats_json(s: TargetStats) -> dict[str, Any]:
    return {
        "pending": s.pending, "inflight": s.inflight, "done": s.done, "dead": s.dead,
        "skipped": s.skipped, "oldest_pending_age": s.oldest_pending_age,
        "last_error": s.last_error, "last_error_at": s.last_error_at,
        "unsupported": s.unsupported, "gone": s.gone, "released": s.released,
        "bytes_pending": s.bytes_pending, "unsized_pending": s.unsized_pending,
        "recent_paths": s.recent_paths, "recent_bytes": s.recent_bytes,
    }


def encode(msg: Message) -> bytes:
    """One message as a line. Raises ProtocolError (too_large) past MAX_LINE."""
    body = _reply_json(msg) if isinstance(msg, _REPLY_TYPES) else _request_json(msg)
    line = json.dumps({"v": VERSION, **body}, separators=(",", ":")).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise ProtocolError(f"message of {len(line)} bytes exceeds {MAX_LINE}", "too_large")
    return line


def _load(line: bytes) -> dict[str, Any]:
    """Bytes -> JSON object with the right version, or ProtocolError."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line of {len(line)} bytes exceeds {MAX_LINE}", "too_large")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"not UTF-8 at byte {exc.start}") from None
    if text.endswith("\n"):
        text = text[:-1]
    if "\n" in text:
        raise ProtocolError("more than one line in a message")
    if too_deep(line):
        raise ProtocolError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ProtocolError("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise ProtocolError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("v")
    if version != VERSION or not _is_int(version):
        raise ProtocolError(
            f"protocol version {version!r} is not supported (this side speaks {VERSION})",
            "bad_version", "v")
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str(obj: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"field '{key}' must be a string", field=key)
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"field '{key}' must be a non-negative integer", field=key)
    return value


def _paths(obj: Mapping[str, Any], *, optional: bool = False) -> tuple[str, ...] | None:
    value = obj.get("paths")
    if value is None and optional:
        return None
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ProtocolError("field 'paths' must be a list of strings", field="paths")
    if len(value) > MAX_PATHS:
        raise ProtocolError(
            f"{len(value)} paths in one message exceed {MAX_PATHS}", "too_large", "paths")
    return tuple(value)


def decode_request(line: bytes) -> Request:
    """Parse one request line (with or without its newline). Raises only ProtocolError."""
    obj = _load(line)
    op = obj.get("op")
    if op == "enqueue":
        paths = _paths(obj)
        source = obj.get("source", "push")
        if source not in SOURCES:
            raise ProtocolError(f"field 'source' must be one of {', '.join(SOURCES)}",
                                field="source")
        return EnqueueRequest(paths or (), source, _str(obj, "drv", optional=True))
    if op == "status":
        return StatusRequest()
    if op in ("retry", "drop"):
        kind = RetryRequest if op == "retry" else DropRequest
        return kind(_str(obj, "target", optional=True), _paths(obj, optional=True))
    if op == "ping":
        return PingRequest()
    if op == "progress":
        return progress.decode_request(obj)
    if not isinstance(op, str):
        raise ProtocolError("field 'op' must be a string", field="op")
    raise ProtocolError(f"unknown op {op[:40]!r}", field="op")


def decode_reply(line: bytes, op: Op) -> Reply:
    """Parse the reply to a request of kind `op`. Raises only ProtocolError."""
    obj = _load(line)
    ok = obj.get("ok")
    if ok is False:
        code = obj.get("error")
        return ErrorReply(code if code in ERROR_CODES else "internal",
                          _str(obj, "message", optional=True) or "")
    if ok is not True:
        raise ProtocolError("field 'ok' must be true or false", field="ok")
    if op == "enqueue":
        return EnqueueReply(_int(obj, "queued"), _int(obj, "skipped"))
    if op in ("retry", "drop"):
        return ChangedReply(_int(obj, "changed"))
    if op == "status":
        return StatusReply(_targets(obj.get("targets")), _spool(obj.get("spool")))
    if op == "progress":
        return progress.decode_reply(obj)
    return OkReply()


def _targets(value: object) -> dict[str, TargetStats]:
    if not isinstance(value, dict):
        raise ProtocolError("field 'targets' must be an object", field="targets")
    out = {}
    for name, s in value.items():
        if not isinstance(s, dict):
            raise ProtocolError(f"targets.{name} must be an object", field="targets")
        out[name] = TargetStats(
            **{k: _int(s, k) for k in ("pending", "inflight", "done", "dead", "skipped")},
            oldest_pending_age=_num(s, "oldest_pending_age"),
            last_error=_str(s, "last_error", optional=True),
            last_error_at=_num(s, "last_error_at"),
            unsupported=_str(s, "unsupported", optional=True),
            # absent from daemons older than the GC roots: none counted
            **{k: _int(s, k) for k in ("gone", "released") if k in s},
            # absent from daemons older than `progress`
            **{k: _int(s, k) for k in ("bytes_pending", "unsized_pending", "recent_paths",
                                       "recent_bytes") if k in s},
        )
    return out


def _spool(value: object) -> SpoolStats | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("field 'spool' must be an object", field="spool")
    return SpoolStats(_int(value, "pending"), _int(value, "quarantined"),
                      _str(value, "error", optional=True))


def _num(obj: Mapping[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"field '{key}' must be a number or null", field=key)
    return float(value)
