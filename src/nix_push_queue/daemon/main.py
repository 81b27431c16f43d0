"""The daemon: store + server + workers + spool ingestion + sd_notify + signals, assembled.

Start: open the queue (state_dir/queue.sqlite, directory mode 0700), put rows left inflight by
a crash back to pending, ingest the spool, listen (socket activation or own socket), start the
workers, tell systemd READY=1. Then ingest spool entries as they arrive (spoolloop.py).
SIGTERM/SIGINT: stop accepting, let running uploads finish for up to the stop grace, release
what did not finish, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config.model import Config, Target
from ..errors import DaemonError, NpqError
from ..nix import priority, runner
from ..wire.protocol import TargetStats
from . import cachecheck, supervise
from .clock import RealClock
from .dbconn import CHECKPOINT_EVERY
from .listen import bind_socket, inherited_socket, socket_inode, unlink_socket
from .metrics import DaemonMetrics
from .resolver import Resolver
from .roots import EVERY as ROOTS_EVERY
from .roots import keeper_for
from .s3.credentials import aws_files
from .sdnotify import sd_notify
from .server import Intake, Server
from .spooler import Spooler
from .spoolloop import SpoolLoop
from .statelock import StateLock
from .stopwatch import SLACK, StopWatchdog, enable_stack_dumps
from .store import QueueStore
from .storeurl import TargetKeys
from .transport import choose_all
from .trusted import TrustState
from .unsupported import check_targets, sweep_loop
from .uploader import NixCopyUploader
from .worker import Worker

log = logging.getLogger(__name__)

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
    config_file: str | None = None  # for the trust check (trusted.py)


def resolve_keys(targets: Sequence[Target], credentials_dir: str | None
                 ) -> dict[str, TargetKeys]:
    """Key files per target: `$CREDENTIALS_DIRECTORY/<target>-secret-key` (`-ssh-key`,
    `-credentials`, `-aws-env`) when systemd's LoadCredential put one there, else the
    configured path."""

    def pick(target: Target, suffix: str, configured: str | None) -> str | None:
        if credentials_dir:
            candidate = Path(credentials_dir) / f"{target.name}-{suffix}"
            if candidate.is_file():
                return str(candidate)
        return configured

    return {t.name: TargetKeys(secret_key=pick(t, "secret-key", t.secret_key_file),
                               ssh_key=pick(t, "ssh-key", t.ssh_key_file),
                               credentials=pick(t, "credentials", t.credentials_file),
                               aws_env=pick(t, "aws-env", t.environment_file))
            for t in targets}


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in _PRIVATE_ENV}


class Daemon:
    def __init__(self, options: DaemonOptions) -> None:
        config = options.config
        if not config.targets:
            raise DaemonError("the config has no targets: nothing to push to (a consumer-only "
                              "host needs no daemon)")
        self.options = options
        self.config = config
        self.watchdog: StopWatchdog | None = None  # armed once the stop begins
        self._names = tuple(t.name for t in config.targets)
        self._stop = asyncio.Event()
        self.lock = _lock_state(Path(config.queue.state_dir), Path(config.queue.spool_dir))
        try:
            self.store = QueueStore(Path(config.queue.state_dir) / "queue.sqlite")
        except BaseException:
            self.lock.release()
            raise
        self.store.configure(self._names)  # rows of other targets are orphaned (admin.py)
        self.metrics = DaemonMetrics(stats=self._stats)
        aws = aws_files(config, options.credentials_dir)
        os.environ.update(aws)  # boto3 reads the process environment
        self._child_env = {**child_env(options.env), **aws}
        # Targets this Nix cannot upload to (s3:// without S3 support): no worker; their
        # rows become dead letters (unsupported.py).
        support, self.transports = choose_all(config.targets, config.nix.nix_bin_dir,
                                              self._child_env)
        self.unsupported = check_targets(config.targets, support, self.transports)
        self.roots = keeper_for(config, self.store, self._child_env, self.metrics)
        keys = resolve_keys(config.targets, options.credentials_dir)
        uploader = NixCopyUploader.from_config(config, self._child_env, keys, self.transports)
        staging = uploader.staging
        boto3_has = {n: uploader.s3_has for n, c in self.transports.items()
                     if c.name == "boto3"}
        if staging is not None and any(c.name == "boto3" for c in self.transports.values()):
            staging.clear()  # what a killed daemon's batches left
            self.metrics.watch_s3(staging.held, staging.max_bytes, uploader.s3_traffic,
                                  [n for n, c in self.transports.items() if c.name == "boto3"])
        # Builds get the reserved CPUs while they run (nix/priority.py): the hook's entries
        # say when; every `nix` child started from here on asks (runner.share_cpus).
        self.cpus = priority.CpuShare(config.queue.reserved_cpus, os.sched_getaffinity(0))
        runner.share_cpus(self.cpus)
        if self.cpus.narrow is not None:  # every thread; later ones inherit it
            priority.pin_process(os.getpid(), self.cpus.narrow)
        self.intake = Intake(self.store, config.nix.store_dir, self._names,
                             config.filters.exclude, time.time, self.metrics,
                             build_seen=self.cpus.build_seen,
                             unsupported=self.unsupported,
                             roots=self.roots.root if self.roots is not None else None,
                             lacking=cachecheck.for_config(config, self._child_env,
                                                           keys, boto3_has).lacking,
                             transports={n: str(c) for n, c in self.transports.items()},
                             staging=staging.held if staging is not None else None,
                             staging_max=staging.max_bytes if staging is not None else None)
        served = [t for t in config.targets if t.name not in self.unsupported]
        self.worker = Worker(self.store, uploader, served, config.queue, RealClock(),
                             metrics=self.metrics, roots=self.roots, crashes=self.metrics)
        # Builds in a burst (the last two within the wait) wait for the next ones; a lone
        # build, or builds further apart, are resolved at once.
        wait = config.queue.build_batch_wait
        self.resolver = Resolver(
            self.intake, config.queue.retry, self._child_env, config.nix.nix_bin_dir,
            notify=self.worker.notify,
            linger=lambda: wait if self.cpus.busy() and self.cpus.build_gap() <= wait else 0.0)
        self.spooler = Spooler(config.queue.spool_dir, self.intake, self.metrics)
        self.spool = SpoolLoop(config.queue.spool_dir, self.spooler, self._queued)
        self.trust = TrustState(config, options.config_file, self._child_env)
        self.server = Server(self.intake, notify=self._queued, metrics=self.metrics,
                             spool_stats=self.spooler.stats, trust=lambda: self.trust.lines)

    def _queued(self) -> None:
        """New rows or derivations: wake the workers and the resolver."""
        self.worker.notify()
        self.resolver.notify()

    def _stats(self) -> Mapping[str, TargetStats]:
        return self.store.stats(time.time(), self._names)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        q = self.config.queue
        recovered = await asyncio.to_thread(self.store.recover)
        if recovered:
            log.info("recovered %d row(s) left inflight by the previous run", recovered)
        await self.spool.ingest()  # a failure is retried at the loop's first poll
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
            background = self._background()
            await self._stop.wait()
            log.info("stopping")
            sd_notify(self.options.notify_socket, "STOPPING=1")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            for task in background:
                task.cancel()
            grace = self.options.stop_grace
            grace = self.config.queue.stop_grace if grace is None else grace
            # Until the process exits (asyncio.run waits for our threads after this).
            self.watchdog = StopWatchdog(grace + SLACK)
            self.watchdog.start()
            await asyncio.gather(*background, return_exceptions=True)
            await self.server.close()
            await self.worker.stop(grace)
            if inode is not None:
                unlink_socket(q.socket, inode)
            sock.close()
            self.metrics.close()
            self.store.close()
            self.lock.release()
            log.info("stopped")

    def _background(self) -> list[asyncio.Task[None]]:
        """The periodic tasks, each supervised (supervise.py): never a dead loop."""
        tasks: dict[str, Callable[[], Awaitable[None]]] = {
            "trust": lambda: asyncio.to_thread(self.trust.run),
            "spool": self.spool.loop,
            "status": self._status_loop,
            "checkpoint": self._checkpoint_loop,
            "resolver": self.resolver.loop,
        }
        if self.roots is not None:
            tasks["gc-roots"] = functools.partial(self.roots.loop, ROOTS_EVERY)
        if self.unsupported:
            tasks["unsupported"] = functools.partial(
                sweep_loop, self.store, self.unsupported,
                lambda name, n: self.metrics.paths_settled(name, "dead", n))
        return [supervise.start(name, run, self.metrics) for name, run in tasks.items()]

    def _listen(self) -> tuple[socket.socket, int | None]:
        q = self.config.queue
        if self.options.listen_fds:
            log.info("using the socket passed by systemd (fd %d)", self.options.listen_fds[0])
            return inherited_socket(self.options.listen_fds[0]), None
        sock = bind_socket(q.socket, q.socket_mode, q.socket_group)
        return sock, socket_inode(q.socket)

    async def _checkpoint_loop(self) -> None:
        """The scheduled checkpoint (dbconn.py): what a quiet queue wrote moves from the WAL
        into the database, so the next write starts the WAL over."""
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            try:
                await asyncio.to_thread(self.store.checkpoint)
            except NpqError as exc:
                log.debug("scheduled checkpoint: %s", exc)

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


def _lock_state(state_dir: Path, spool_dir: Path) -> StateLock:
    """Create the directories and take the state directory's lock, before the queue is
    opened: a second daemon must not touch the database at all (statelock.py)."""
    for directory in (state_dir, spool_dir):
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DaemonError(f"cannot create {directory}: {exc.strerror}") from exc
    lock = StateLock(state_dir)
    lock.acquire()
    return lock


def run(options: DaemonOptions) -> int:
    daemon = Daemon(options)
    enable_stack_dumps()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(daemon.run())
    if daemon.watchdog is not None:
        daemon.watchdog.cancel()
    return 0
