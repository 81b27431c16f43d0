"""The `progress` op: where given paths stand on each target (what `push --wait`, `wait
--paths` and `verify` wait for), and, with `prioritize`, those paths' pending rows go ahead of
the background backlog. No I/O; protocol.py frames these messages.

The reply counts rather than lists, so it stays small for 10,000 paths; only the paths that
failed (dead, gone, not queued) are named, at most PROBLEM_CAP per target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..errors import ProtocolError
from .framing import MAX_PATHS

PROBLEM_CAP = 100

ProblemState = Literal["dead", "gone", "missing"]
PROBLEM_STATES: tuple[str, ...] = get_args(ProblemState)
COUNTS = ("total", "pending", "inflight", "done", "skipped", "excluded", "dead", "gone",
          "missing", "retries", "bytes_done", "bytes_total", "unsized")


@dataclass(frozen=True)
class ProgressRequest:
    paths: tuple[str, ...]
    prioritize: bool = False
    op: Literal["progress"] = field(default="progress", init=False)


@dataclass(frozen=True)
class PathProblem:
    """A path that will not reach a target unless someone acts: a dead letter, a path that
    left the store before its upload (gone), or one that is not queued (missing: dropped,
    or never pushed)."""

    path: str
    state: ProblemState
    error: str | None = None


@dataclass(frozen=True)
class PathsProgress:
    """The asked-for paths on one target. Every path is in exactly one of pending, inflight,
    done, skipped (an upstream cache serves it), excluded (filters.exclude), dead, gone,
    missing. Bytes are NAR sizes the daemon has measured; `unsized` rows are not yet."""

    total: int = 0
    pending: int = 0
    inflight: int = 0
    done: int = 0
    skipped: int = 0
    excluded: int = 0
    dead: int = 0
    gone: int = 0
    missing: int = 0
    retries: int = 0  # failed attempts that were (or will be) tried again
    bytes_done: int = 0
    bytes_total: int = 0
    unsized: int = 0
    problems: tuple[PathProblem, ...] = ()

    @property
    def outstanding(self) -> int:
        return self.pending + self.inflight

    @property
    def settled(self) -> int:
        return self.done + self.skipped + self.excluded


@dataclass(frozen=True)
class ProgressReply:
    targets: Mapping[str, PathsProgress]
    # spool files not ingested yet, and derivations not resolved yet: a missing path may be
    # in one
    spool_pending: int = 0
    spool_error: str | None = None


def request_json(msg: ProgressRequest) -> dict[str, Any]:
    return {"paths": list(msg.paths), "prioritize": msg.prioritize}


def reply_json(msg: ProgressReply) -> dict[str, Any]:
    targets = {}
    for name, p in msg.targets.items():
        doc: dict[str, Any] = {k: getattr(p, k) for k in COUNTS}
        doc["problems"] = [{"path": x.path, "state": x.state, "error": x.error}
                           for x in p.problems]
        targets[name] = doc
    return {"ok": True, "targets": targets, "spool_pending": msg.spool_pending,
            "spool_error": msg.spool_error}


def decode_request(obj: Mapping[str, Any]) -> ProgressRequest:
    paths = obj.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ProtocolError("field 'paths' must be a list of strings", field="paths")
    if len(paths) > MAX_PATHS:
        raise ProtocolError(f"{len(paths)} paths in one message exceed {MAX_PATHS}",
                            "too_large", "paths")
    prioritize = obj.get("prioritize", False)
    if not isinstance(prioritize, bool):
        raise ProtocolError("field 'prioritize' must be true or false", field="prioritize")
    return ProgressRequest(tuple(paths), prioritize)


def decode_reply(obj: Mapping[str, Any]) -> ProgressReply:
    targets = obj.get("targets")
    if not isinstance(targets, dict):
        raise ProtocolError("field 'targets' must be an object", field="targets")
    out = {}
    for name, doc in targets.items():
        if not isinstance(doc, dict):
            raise ProtocolError(f"targets.{name} must be an object", field="targets")
        out[name] = PathsProgress(**{k: _count(doc, k) for k in COUNTS},
                                  problems=_problems(doc.get("problems", [])))
    error = obj.get("spool_error")
    if error is not None and not isinstance(error, str):
        raise ProtocolError("field 'spool_error' must be a string", field="spool_error")
    return ProgressReply(out, _count(obj, "spool_pending"), error)


def _count(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"field '{key}' must be a non-negative integer", field=key)
    return value


def _problems(value: object) -> tuple[PathProblem, ...]:
    if not isinstance(value, list):
        raise ProtocolError("field 'problems' must be a list", field="problems")
    out = []
    for item in value:
        if (not isinstance(item, dict) or not isinstance(item.get("path"), str)
                or item.get("state") not in PROBLEM_STATES
                or not isinstance(item.get("error"), str | None)):
            raise ProtocolError("each of 'problems' must be {path, state, error}",
                                field="problems")
        out.append(PathProblem(item["path"], item["state"], item["error"]))
    return tuple(out)


def merge(parts: list[ProgressReply]) -> ProgressReply:
    """The replies to one request per chunk of paths, as one."""
    targets: dict[str, PathsProgress] = {}
    for part in parts:
        for name, p in part.targets.items():
            have = targets.get(name)
            if have is None:
                targets[name] = p
                continue
            counts = {k: getattr(have, k) + getattr(p, k) for k in COUNTS}
            problems = (have.problems + p.problems)[:PROBLEM_CAP]
            targets[name] = PathsProgress(**counts, problems=problems)
    errors = [p.spool_error for p in parts if p.spool_error is not None]
    return ProgressReply(targets, max((p.spool_pending for p in parts), default=0),
                         errors[0] if errors else None)
