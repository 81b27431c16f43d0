"""What `status` carries per target and about the spool, and its JSON both ways (the status
reply of wire/protocol.py). No I/O; decoding raises only errors.ProtocolError."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ProtocolError
from .fields import get_bool, get_int, get_num, get_str


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
    # The target is no longer in the daemon's config: nobody uploads these rows.
    orphaned: bool = False
    # How uploads reach the target, and why ("boto3 (auto: this Nix ... has no S3 store)"),
    # and the disk its staged files hold (the boto3 S3 transport), of the daemon's cap.
    transport: str | None = None
    staging_bytes: int = 0
    staging_max_bytes: int | None = None


RATE_WINDOW = 60.0  # seconds of uploads `status` reports a rate over


@dataclass(frozen=True)
class SpoolStats:
    """The daemon's spool, counted when the status was asked for (before the queue was
    read, so a file ingested in between is seen in one of the two)."""

    pending: int = 0  # files not ingested yet
    quarantined: int = 0  # entries set aside: unreadable or holding invalid lines
    error: str | None = None  # the spool could not be counted


def target_json(s: TargetStats) -> dict[str, Any]:
    return {
        "pending": s.pending, "inflight": s.inflight, "done": s.done, "dead": s.dead,
        "skipped": s.skipped, "oldest_pending_age": s.oldest_pending_age,
        "last_error": s.last_error, "last_error_at": s.last_error_at,
        "unsupported": s.unsupported, "gone": s.gone, "released": s.released,
        "bytes_pending": s.bytes_pending, "unsized_pending": s.unsized_pending,
        "recent_paths": s.recent_paths, "recent_bytes": s.recent_bytes,
        "orphaned": s.orphaned,
        "transport": s.transport, "staging_bytes": s.staging_bytes,
        "staging_max_bytes": s.staging_max_bytes,
    }


def spool_json(s: SpoolStats) -> dict[str, Any]:
    return {"pending": s.pending, "quarantined": s.quarantined, "error": s.error}


def decode_targets(value: object) -> dict[str, TargetStats]:
    if not isinstance(value, dict):
        raise ProtocolError("field 'targets' must be an object", field="targets")
    out = {}
    for name, s in value.items():
        if not isinstance(s, dict):
            raise ProtocolError(f"targets.{name} must be an object", field="targets")
        out[name] = TargetStats(
            **{k: get_int(s, k) for k in ("pending", "inflight", "done", "dead", "skipped")},
            oldest_pending_age=get_num(s, "oldest_pending_age"),
            last_error=get_str(s, "last_error", optional=True),
            last_error_at=get_num(s, "last_error_at"),
            unsupported=get_str(s, "unsupported", optional=True),
            # absent from daemons older than the GC roots: none counted
            **{k: get_int(s, k) for k in ("gone", "released") if k in s},
            # absent from daemons older than `progress`
            **{k: get_int(s, k) for k in ("bytes_pending", "unsized_pending", "recent_paths",
                                       "recent_bytes") if k in s},
            orphaned=get_bool(s, "orphaned"),
            # absent from daemons older than the S3 transports
            transport=get_str(s, "transport", optional=True) if "transport" in s else None,
            **{k: get_int(s, k) for k in ("staging_bytes",) if k in s},
            staging_max_bytes=(get_int(s, "staging_max_bytes")
                               if s.get("staging_max_bytes") is not None else None),
        )
    return out


def decode_spool(value: object) -> SpoolStats | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("field 'spool' must be an object", field="spool")
    return SpoolStats(get_int(value, "pending"), get_int(value, "quarantined"),
                      get_str(value, "error", optional=True))
