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
from ..wire import framing, gcroots, spool
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
    roots_dir: str | None = None  # None: no GC roots (queue.gc_roots.enable false, no config)


def endpoint(config_path: Path | None, socket_path: str | None) -> Endpoint:
    """From the daemon's config file; `socket_path` overrides its socket. Without a config
    file (none given and the default absent) a socket alone will do."""
    path = config_path or Path(DEFAULT_CONFIG)
    if config_path is None and socket_path is not None and not path.exists():
        return Endpoint(socket_path)
    from ..config import load_config

    config = load_config(path)
    return Endpoint(socket=socket_path or config.queue.socket, store_dir=config.nix.store_dir,
                    spool_dir=config.queue.spool_dir, nix_bin_dir=config.nix.nix_bin_dir,
                    roots_dir=(config.nix.gc_roots_dir if config.queue.gc_roots.enable
                               else None))


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

    def enqueue(self, paths: Sequence[str], source: Source = "push", *,
                force: bool = False) -> tuple[int, int]:
        """(rows queued, rows skipped), over as many requests as needed. `force`: queue
        again what the queue counts as uploaded (push --force)."""
        queued = skipped = 0
        for chunk in framing.split_paths(paths):
            reply = self.request(EnqueueRequest(tuple(chunk), source, force=force))
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

    def drop_orphaned(self) -> int:
        return self._changed(DropRequest(orphaned=True))

    def _changed(self, request: Request) -> int:
        reply = self.request(request)
        return reply.changed if isinstance(reply, ChangedReply) else 0


# -- push (what to push: pushpaths.py) -------------------------------------------------------


def push(client: ControlClient, paths: Sequence[str], ep: Endpoint, *, force: bool = False,
         roots: Sequence[str] | None = None) -> tuple[int, int, bool]:
    """Enqueue; when the daemon is down (or refuses for a reason of its own), root the paths
    (`roots`, when `paths` holds derivation installables: their outputs) as the hook does
    (nothing else protects them until the daemon ingests them) and spool them. Returns
    (queued, skipped, spooled). The daemon roots what it queues before it answers."""
    roots = paths if roots is None else roots
    try:
        queued, skipped = client.enqueue(paths, "push", force=force)
    except (DaemonUnavailable, ProtocolError) as exc:
        # A refusal that is the daemon's problem (its disk is full) spools too, as the hook
        # does; a refusal of the paths themselves is the user's to fix.
        if ep.spool_dir is None or (isinstance(exc, ProtocolError) and exc.code != "internal"):
            raise
        if ep.roots_dir is not None:
            rooted, problem = gcroots.root_all(ep.roots_dir, roots)
            if problem is not None:
                log.warning("cannot make %d path(s) GC roots in %s: %s; a garbage collection "
                            "before the daemon starts may delete them (run push as a user "
                            "who may write there, see docs/gc-roots.md)",
                            len(roots) - rooted, ep.roots_dir, problem)
        written = spool.write_spool(ep.spool_dir, list(paths))
        log.warning("%s; wrote %d path(s) to the spool (%s); the daemon ingests them when "
                    "it starts", exc, len(paths), written)
        return 0, 0, True
    return queued, skipped, False


# -- wait -----------------------------------------------------------------------------------


def busy(stats: dict[str, TargetStats]) -> int:
    return sum(s.pending + s.inflight for s in stats.values())


def configured(stats: dict[str, TargetStats]) -> dict[str, TargetStats]:
    """The targets in the daemon's config: an orphaned target's rows are nobody's to upload,
    so `wait` neither waits for nor fails on them (`status` shows them; `drop --orphaned`)."""
    return {name: s for name, s in stats.items() if not s.orphaned}


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
        stats = configured(dict(reply.targets))
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
    # Dead letters take precedence over lost paths (docs/ci.md; `wait --paths` alike).
    dead = {name: s for name, s in stats.items() if s.dead}
    if dead:
        parts = [f"{name}: {s.dead} dead (last error: {s.last_error or '-'})"
                 for name, s in sorted(dead.items())]
        parts += [f"{name}: {s.gone} lost (garbage-collected before upload)"
                  for name, s in sorted(stats.items()) if s.gone]
        raise DeadLetters("queue drained with dead letters; see `nix-push-queue status`, then "
                          "`retry` or `drop`: " + "; ".join(parts))
    lost_paths(stats)
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
                 f"them; last error: {s.last_error or '-'})" for name, s in sorted(lost.items())]
        raise PathsLost("queue drained, but paths were lost before their upload (they left "
                        "the local store, or a derivation's outputs could not be resolved); "
                        "they are not in the cache: " + "; ".join(parts)
                        + ". Rebuild and push them, then acknowledge with `nix-push-queue "
                        "drop` (see `status`)")


def _spool_count(spool_dir: str | None) -> int:
    if spool_dir is None:
        return 0
    try:
        return len(spool.spool_files(spool_dir))
    except Exception:  # unreadable to this user: the daemon's business, not ours
        return 0
