"""The daemon: store + server + workers + spool ingestion + sd_notify + signals, assembled.

Start: open the queue (state_dir/queue.sqlite, directory mode 0700), put rows left inflight by
a crash back to pending, ingest the spool, listen (socket activation or own socket), start the
workers, tell systemd READY=1. Then poll the spool directory about once a second (a stat;
files are only read when it changed). SIGTERM/SIGINT: stop accepting, let running uploads
finish for up to the stop grace, release what did not finish, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config.model import Config, Target
from ..errors import DaemonError, NpqError
from ..wire.protocol import TargetStats
from .clock import RealClock
from .listen import bind_socket, inherited_socket, socket_inode, unlink_socket
from .metrics import DaemonMetrics
from .roots import EVERY as ROOTS_EVERY
from .roots import keeper_for
from .server import Intake, Server
from .spooler import Spooler
from .store import QueueStore
from .unsupported import check_targets, sweep_loop
from .uploader import NixCopyUploader, TargetKeys
from .worker import Worker

log = logging.getLogger(__name__)

SPOOL_POLL = 1.0  # seconds between looks at the spool directory
SPOOL_FORCE = 60.0  # ingest even without a visible directory change this often
STATUS_EVERY = 10.0  # seconds between STATUS= updates to systemd
# Variables meant for this process only; `nix copy` children must not see them.
_PRIVATE_ENV = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                "CREDENTIALS_DIRECTORY")


@dataclass(frozen=True)
class DaemonOptions:
    config: Config
    env: Mapping[str, str]  # the environment `nix copy` runs in
    credentials_dir: str | None = None
    listen_fds: tuple[int, ...] = ()
    notify_socket: str | None = None
    stop_grace: float | None = None  # None: the config's queue.stop_grace


def resolve_keys(targets: Sequence[Target], credentials_dir: str | None
                 ) -> dict[str, TargetKeys]:
    """Key files per target: `$CREDENTIALS_DIRECTORY/<target>-secret-key` (`-ssh-key`,
    `-credentials`) when systemd's LoadCredential put one there, else the configured path."""

    def pick(target: Target, suffix: str, configured: str | None) -> str | None:
        if credentials_dir:
            candidate = Path(credentials_dir) / f"{target.name}-{suffix}"
            if candidate.is_file():
                return str(candidate)
        return configured

    return {t.name: TargetKeys(secret_key=pick(t, "secret-key", t.secret_key_file),
                               ssh_key=pick(t, "ssh-key", t.ssh_key_file),
                               credentials=pick(t, "credentials", t.credentials_file))
            for t in targets}


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in _PRIVATE_ENV}


def sd_notify(address: str | None, message: str) -> bool:
    """systemd's notify protocol: one datagram to $NOTIFY_SOCKET ('@' = abstract namespace).
    Returns False when there is no socket or it cannot be reached (never fatal)."""
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never block the event loop on the reader: once its queue is full (10 datagrams
            # by default) a blocking send waits for it, and the daemon stops answering.
            sock.setblocking(False)
            sock.connect(target)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", address, exc.strerror)
        return False
    return True


class Daemon:
    def __init__(self, options: DaemonOptions) -> None:
        config = options.config
        if not config.targets:
            raise DaemonError("the config has no targets: nothing to push to (a consumer-only "
                              "host needs no daemon)")
        self.options = options
        self.config = config
        self._names = tuple(t.name for t in config.targets)
        self._stop = asyncio.Event()
        self.store = _open_store(Path(config.queue.state_dir), Path(config.queue.spool_dir))
        self.metrics = DaemonMetrics(stats=self._stats)
        self._child_env = child_env(options.env)
        # Targets this Nix cannot upload to (s3:// without S3 support): no worker; their
        # rows become dead letters (unsupported.py).
        self.unsupported = check_targets(config.targets, config.nix.nix_bin_dir,
                                         self._child_env)
        self.roots = keeper_for(config, self.store, self._child_env, self.metrics)
        self.intake = Intake(self.store, config.nix.store_dir, self._names,
                             config.filters.exclude, time.time, self.metrics,
                             unsupported=self.unsupported,
                             roots=self.roots.root if self.roots is not None else None)
        uploader = NixCopyUploader.from_config(
            config, self._child_env, resolve_keys(config.targets, options.credentials_dir))
        served = [t for t in config.targets if t.name not in self.unsupported]
        self.worker = Worker(self.store, uploader, served, config.queue, RealClock(),
                             metrics=self.metrics, roots=self.roots)
        self.spooler = Spooler(config.queue.spool_dir, self.intake, self.metrics)
        self.server = Server(self.intake, notify=self.worker.notify, metrics=self.metrics,
                             spool_stats=self.spooler.stats)

    def _stats(self) -> Mapping[str, TargetStats]:
        return self.store.stats(time.time(), self._names)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        q = self.config.queue
        recovered = await asyncio.to_thread(self.store.recover)
        if recovered:
            log.info("recovered %d row(s) left inflight by the previous run", recovered)
        await self._ingest()
        sock, inode = self._listen()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        background: list[asyncio.Task[None]] = []
        try:
            await self.server.start(sock)
            self.worker.start()
            if self.config.metrics.listen:
                self.metrics.serve(self.config.metrics.listen)
            log.info("ready: socket %s, %d target(s): %s, %d worker(s)", q.socket,
                     len(self._names), ", ".join(self._names), q.workers)
            sd_notify(self.options.notify_socket, f"READY=1\nSTATUS={self._status_line()}")
            background = [asyncio.create_task(self._spool_loop()),
                          asyncio.create_task(self._status_loop())]
            if self.roots is not None:
                background.append(asyncio.create_task(self.roots.loop(ROOTS_EVERY)))
            if self.unsupported:
                background.append(asyncio.create_task(sweep_loop(
                    self.store, self.unsupported,
                    lambda name, n: self.metrics.paths_settled(name, "dead", n))))
            await self._stop.wait()
            log.info("stopping")
            sd_notify(self.options.notify_socket, "STOPPING=1")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.server.close()
            grace = self.options.stop_grace
            await self.worker.stop(self.config.queue.stop_grace if grace is None else grace)
            if inode is not None:
                unlink_socket(q.socket, inode)
            sock.close()
            self.metrics.close()
            self.store.close()
            log.info("stopped")

    def _listen(self) -> tuple[socket.socket, int | None]:
        q = self.config.queue
        if self.options.listen_fds:
            log.info("using the socket passed by systemd (fd %d)", self.options.listen_fds[0])
            return inherited_socket(self.options.listen_fds[0]), None
        sock = bind_socket(q.socket, q.socket_mode, q.socket_group)
        return sock, socket_inode(q.socket)

    # -- spool ----------------------------------------------------------------------------

    async def _spool_loop(self) -> None:
        seen = _dir_signature(self.config.queue.spool_dir)
        forced = time.monotonic()
        while True:
            await asyncio.sleep(SPOOL_POLL)
            current = _dir_signature(self.config.queue.spool_dir)
            if current != seen or time.monotonic() - forced > SPOOL_FORCE:
                # Taken before reading: a file renamed in while we read changes it again.
                seen, forced = current, time.monotonic()
                if not await self._ingest():
                    seen = (-1, -1)  # failed (disk full, database locked): retry next poll

    async def _ingest(self) -> bool:
        """Ingest every spool file; False when that failed and must be retried."""
        try:
            files = await asyncio.to_thread(self.spooler.ingest)
        except NpqError as exc:
            log.error("spool ingestion failed (will retry): %s", exc)
            return False
        if files:
            self.worker.notify()
        return True

    # -- systemd status -------------------------------------------------------------------

    async def _status_loop(self) -> None:
        while self.options.notify_socket:
            await asyncio.sleep(STATUS_EVERY)
            line = await asyncio.to_thread(self._status_line)
            sd_notify(self.options.notify_socket, f"STATUS={line}")

    def _status_line(self) -> str:
        stats = self.store.stats(time.time(), self._names)
        total = {k: sum(getattr(s, k) for s in stats.values())
                 for k in ("pending", "inflight", "dead")}
        return (f"{total['pending']} pending, {total['inflight']} uploading, "
                f"{total['dead']} dead")


def _open_store(state_dir: Path, spool_dir: Path) -> QueueStore:
    for directory in (state_dir, spool_dir):
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DaemonError(f"cannot create {directory}: {exc.strerror}") from exc
    return QueueStore(state_dir / "queue.sqlite")


def _dir_signature(directory: str) -> tuple[int, int] | None:
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def run(options: DaemonOptions) -> int:
    daemon = Daemon(options)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(daemon.run())
    return 0
