"""The client side of the control ops (push, status, wait, retry, drop): one short
connection per request to the daemon's socket, protocol.py on the wire.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import (
    DaemonUnavailable,
    DeadLetters,
    PathsLost,
    ProtocolError,
    WaitTimeout,
)
from ..wire import framing, spool
from ..wire.protocol import (
    ChangedReply,
    DropRequest,
    EnqueueReply,
    EnqueueRequest,
    ErrorReply,
    PingRequest,
    Reply,
    Request,
    RetryRequest,
    Source,
    SpoolStats,
    StatusReply,
    StatusRequest,
    TargetStats,
    decode_reply,
    encode,
)

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "/etc/nix-push-queue/config.json"
REQUEST_TIMEOUT = 60.0  # an enqueue of 10,000 paths commits in well under this


@dataclass(frozen=True)
class Endpoint:
    """What a client needs to know about the daemon, usually read from its config."""

    socket: str
    store_dir: str = "/nix/store"
    spool_dir: str | None = None
    nix_bin_dir: str | None = None


def endpoint(config_path: Path | None, socket_path: str | None) -> Endpoint:
    """From the daemon's config file; `socket_path` overrides its socket. Without a config
    file (none given and the default absent) a socket alone will do."""
    path = config_path or Path(DEFAULT_CONFIG)
    if config_path is None and socket_path is not None and not path.exists():
        return Endpoint(socket_path)
    from ..config import load_config

    config = load_config(path)
    return Endpoint(socket=socket_path or config.queue.socket, store_dir=config.nix.store_dir,
                    spool_dir=config.queue.spool_dir, nix_bin_dir=config.nix.nix_bin_dir)


class ControlClient:
    def __init__(self, socket_path: str, timeout: float = REQUEST_TIMEOUT) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, request: Request, timeout: float | None = None) -> Reply:
        """Send one request; return its reply. ErrorReply becomes ProtocolError. `timeout`:
        this request's, instead of the client's."""
        line = encode(request)
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(self.socket_path)
                sock.sendall(line)
                reply_line, _ = framing.read_line(sock, b"", deadline)
        except ValueError as exc:
            raise ProtocolError(str(exc), "too_large") from exc
        except OSError as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DaemonUnavailable(
                f"no answer from the daemon on {self.socket_path}: {reason or 'timed out'}"
            ) from exc
        reply = decode_reply(reply_line, request.op)
        if isinstance(reply, ErrorReply):
            raise ProtocolError(f"the daemon refused {request.op}: {reply.message}",
                                reply.error)
        return reply

    def ping(self) -> None:
        self.request(PingRequest())

    def enqueue(self, paths: Sequence[str], source: Source = "push") -> tuple[int, int]:
        """(rows queued, rows skipped), over as many requests as needed."""
        queued = skipped = 0
        for chunk in framing.split_paths(paths):
            reply = self.request(EnqueueRequest(tuple(chunk), source))
            if isinstance(reply, EnqueueReply):
                queued, skipped = queued + reply.queued, skipped + reply.skipped
        return queued, skipped

    def status(self) -> dict[str, TargetStats]:
        return dict(self.status_reply().targets)

    def status_reply(self, timeout: float | None = None) -> StatusReply:
        """Targets, and the spool as the daemon counts it (None from an older daemon)."""
        reply = self.request(StatusRequest(), timeout)
        if not isinstance(reply, StatusReply):
            raise ProtocolError("the daemon sent no status")
        return reply

    def retry(self, target: str | None, paths: Sequence[str] | None) -> int:
        return self._changed(RetryRequest(target, tuple(paths) if paths else None))

    def drop(self, target: str | None, paths: Sequence[str] | None) -> int:
        return self._changed(DropRequest(target, tuple(paths) if paths else None))

    def _changed(self, request: Request) -> int:
        reply = self.request(request)
        return reply.changed if isinstance(reply, ChangedReply) else 0


# -- push (what to push: pushpaths.py) -------------------------------------------------------


def push(client: ControlClient, paths: Sequence[str], ep: Endpoint) -> tuple[int, int, bool]:
    """Enqueue; when the daemon is down, spool instead. Returns (queued, skipped, spooled)."""
    try:
        queued, skipped = client.enqueue(paths, "push")
    except DaemonUnavailable as exc:
        if ep.spool_dir is None:
            raise
        written = spool.write_spool(ep.spool_dir, list(paths))
        log.warning("%s; wrote %d path(s) to the spool (%s); the daemon ingests them when "
                    "it starts", exc, len(paths), written)
        return 0, 0, True
    return queued, skipped, False


# -- wait -----------------------------------------------------------------------------------


def busy(stats: dict[str, TargetStats]) -> int:
    return sum(s.pending + s.inflight for s in stats.values())


def wait_drained(client: ControlClient, *, timeout: float | None, poll: float = 0.5,
                 spool_dir: str | None = None,
                 on_poll: Callable[[dict[str, TargetStats]], None] | None = None,
                 ) -> dict[str, TargetStats]:
    """Block until nothing is pending or inflight and the spool holds nothing to ingest.
    Raises WaitTimeout, or DeadLetters when it drained with dead letters left.

    The daemon counts its spool before it reads the queue, so a path is always seen in one
    or the other, with or without `spool_dir` (and whoever may read that directory). Only
    an older daemon that does not count it leaves the count to `spool_dir` here."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        reply = _status_by(client, deadline, timeout)
        stats = dict(reply.targets)
        spooled, spool_note = _spool_backlog(reply.spool, spool_dir)
        if on_poll is not None:
            on_poll(stats)
        if busy(stats) == 0 and spooled == 0:
            break
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(f"after {timeout:g} s: {busy(stats)} path(s) still pending or "
                              f"uploading, {spool_note}")
        time.sleep(poll)
    if reply.spool is not None and reply.spool.quarantined:
        log.warning("%d spool entr%s could not be ingested and were moved aside; see "
                    "`nix-push-queue status` and the daemon's log", reply.spool.quarantined,
                    "y" if reply.spool.quarantined == 1 else "ies")
    lost_paths(stats)
    dead = {name: s for name, s in stats.items() if s.dead}
    if dead:
        parts = [f"{name}: {s.dead} dead (last error: {s.last_error or '-'})"
                 for name, s in sorted(dead.items())]
        raise DeadLetters("queue drained with dead letters; see `nix-push-queue status`, then "
                          "`retry` or `drop`: " + "; ".join(parts))
    return stats


def _status_by(client: ControlClient, deadline: float | None, timeout: float | None
               ) -> StatusReply:
    """The status, asked so that the answer cannot outlast `deadline` by much: a daemon
    busy behind a locked database answers late, and `wait --timeout` must still return."""
    if deadline is None:
        return client.status_reply()
    try:
        return client.status_reply(max(deadline - time.monotonic(), 1.0))
    except DaemonUnavailable as exc:
        if time.monotonic() < deadline:
            raise
        raise WaitTimeout(f"after {timeout:g} s: the daemon did not answer `status` in "
                          f"time ({exc})") from exc


def _spool_backlog(reported: SpoolStats | None, spool_dir: str | None) -> tuple[int, str]:
    """(spool files still to ingest, how to say so). A daemon that could not count its
    spool cannot vouch for it: that counts as a backlog."""
    if reported is None:
        n = _spool_count(spool_dir)
        return n, f"{n} spool file(s) not ingested"
    if reported.error is not None:
        return 1, f"the daemon cannot read its spool: {reported.error}"
    return reported.pending, f"{reported.pending} spool file(s) not ingested"


def lost_paths(stats: dict[str, TargetStats]) -> None:
    """Raise PathsLost if a queued path left the store before its upload and no one has
    acknowledged it yet (`drop`): a CI job's `wait` must not pass when a build never
    reached its cache."""
    lost = {name: s for name, s in stats.items() if s.gone}
    if lost:
        parts = [f"{name}: {s.gone} gone ({s.released} after the GC roots cap released "
                 "them)" for name, s in sorted(lost.items())]
        raise PathsLost("queue drained, but paths left the local store before their upload "
                        "(garbage-collected); they are not in the cache: " + "; ".join(parts)
                        + ". Rebuild and push them, then acknowledge with `nix-push-queue "
                        "drop` (see `status`)")


def _spool_count(spool_dir: str | None) -> int:
    if spool_dir is None:
        return 0
    try:
        return len(spool.spool_files(spool_dir))
    except Exception:  # unreadable to this user: the daemon's business, not ours
        return 0
