"""The product under test, driven as a user would: config file, daemon process, hook wrapper.

Nothing here reimplements the product: the daemon is `nix-push-queue daemon --config`, the
hook is `nix-push-queue hook ...` run by Nix itself, and the queue is asked over its socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nix_push_queue.config import load_document
from nix_push_queue.generate import hook_wrapper
from nix_push_queue.nix.isolated import IsolatedNix

NPQ = str(Path(sys.executable).parent / "nix-push-queue")

# The hook's timing wrapper: start and end in ns and the exit code, one line per run. `date`
# costs about a millisecond of fork and exec, the same for every variant.
TIMED_WRAPPER = """\
#!/bin/sh
s=$(date +%s%N)
{inner}
rc=$?
e=$(date +%s%N)
echo "$s $e $rc" >> {timings}
exit $rc
"""

# The Nix manual's post-build-hook example (signs, then `nix copy` inside the hook), with one
# line added: Nix 2.8.0 passes an empty OUT_PATHS, which would make it upload nothing.
MANUAL_HOOK = """\
#!/bin/sh
set -eu
set -f # disable globbing
export IFS=' '
if [ -z "${{OUT_PATHS:-}}" ]; then OUT_PATHS=$(nix-store --query --outputs "$DRV_PATH"); fi
echo "Signing paths" $OUT_PATHS
nix store sign --key-file {key} $OUT_PATHS
echo "Uploading paths" $OUT_PATHS
exec nix copy --to {url} $OUT_PATHS
"""


class ProductUnavailable(RuntimeError):
    """The part of nix-push-queue a benchmark needs is not there (yet) or does not start."""


@dataclass(frozen=True)
class Layout:
    """Where one product instance keeps its socket, state and spool."""

    root: Path

    @property
    def socket(self) -> Path:
        # A unix socket path must fit in 107 bytes, which pytest's tmp_path can exceed.
        digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"npqb-{digest}.sock"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    @property
    def config(self) -> Path:
        return self.root / "config.json"


def write_config(layout: Layout, nix: IsolatedNix, targets: Sequence[Mapping[str, Any]],
                 queue: Mapping[str, Any] | None = None, hook_timeout: float = 2.0) -> Path:
    """A daemon config.json (schema shape; unset keys take the schema's defaults)."""
    for d in (layout.socket.parent, layout.state_dir, layout.spool_dir):
        d.mkdir(parents=True, exist_ok=True)
    doc = {
        "version": 1,
        "targets": [dict(t) for t in targets],
        "nix": {"store_dir": str(nix.store_dir), "state_dir": str(nix.state_dir)},
        "queue": {"socket": str(layout.socket), "state_dir": str(layout.state_dir),
                  "spool_dir": str(layout.spool_dir), **(queue or {})},
        "hook": {"timeout": hook_timeout},
    }
    layout.config.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return layout.config


def hook_command(layout: Layout) -> str:
    """The post-build-hook wrapper that `generate` writes for the layout's config (so the
    benchmark runs the hook exactly as a generated host does), written beside the config;
    returns the command line that runs it."""
    document = json.loads(layout.config.read_text("utf-8"))
    wrapper = layout.root / "post-build-hook"
    wrapper.write_text(hook_wrapper(load_document(document, str(layout.config)), [NPQ]),
                       encoding="utf-8")
    wrapper.chmod(0o755)
    return shlex.quote(str(wrapper))


def install_timed_hook(nix: IsolatedNix, inner: str, timings: Path) -> Path:
    """Make `inner` (a shell command line) Nix's post-build-hook, timed by a wrapper."""
    wrapper = _timed_wrapper(nix.root / "post-build-hook", inner, timings)
    with nix.conf_file.open("a", encoding="utf-8") as conf:
        conf.write(f"post-build-hook = {wrapper}\n")
    return wrapper


def _timed_wrapper(wrapper: Path, inner: str, timings: Path) -> Path:
    wrapper.write_text(TIMED_WRAPPER.format(inner=inner, timings=shlex.quote(str(timings))),
                       encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper


def timing_floor(directory: Path, runs: int = 50) -> list[float]:
    """What the timing wrapper itself adds: its two `date` calls around an empty hook (`:`),
    run `runs` times; seconds each, as read_timings gives them."""
    timings = directory / "floor-timings.txt"
    wrapper = _timed_wrapper(directory / "floor-hook", ":", timings)
    for _ in range(runs):
        subprocess.run([str(wrapper)], check=True)
    return read_timings(timings)[0]


def manual_hook(directory: Path, key: Path, url: str) -> Path:
    script = directory / "manual-hook.sh"
    script.write_text(MANUAL_HOOK.format(key=shlex.quote(str(key)), url=shlex.quote(url)),
                      encoding="utf-8")
    script.chmod(0o755)
    return script


def read_timings(path: Path) -> tuple[list[float], int]:
    """Hook durations in seconds and the number of non-zero exits, from the wrapper's file."""
    durations, failures = [], 0
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 3:
                durations.append((int(parts[1]) - int(parts[0])) / 1e9)
                failures += parts[2] != "0"
    return durations, failures


def request(sock_path: Path, msg: Mapping[str, Any], timeout: float = 30) -> dict[str, Any]:
    """One request over the daemon's socket (protocol v1, newline JSON)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(json.dumps({"v": 1, **msg}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    reply: dict[str, Any] = json.loads(buf)
    return reply


def queue_totals(sock_path: Path) -> dict[str, int]:
    """pending/inflight/done/dead/skipped summed over targets, from the `status` op."""
    reply = request(sock_path, {"op": "status"})
    totals: dict[str, int] = {}
    for stats in reply.get("targets", {}).values():
        for key in ("pending", "inflight", "done", "dead", "skipped"):
            totals[key] = totals.get(key, 0) + int(stats.get(key, 0) or 0)
    return totals


class Daemon:
    """`nix-push-queue daemon --config FILE` as a subprocess, optionally inside a namespace."""

    def __init__(self, layout: Layout, nix: IsolatedNix,
                 wrap: Callable[[list[str]], list[str]] = list) -> None:
        self.layout, self.nix, self.wrap = layout, nix, wrap
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = layout.root / "daemon.log"

    @property
    def pid(self) -> int:
        """The daemon's own pid (not that of `ip netns exec`, which execs into it)."""
        return self.proc.pid if self.proc else 0

    def start(self, timeout: float = 60) -> None:
        argv = self.wrap([NPQ, "daemon", "--config", str(self.layout.config)])
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, env=self.nix.env(), stdout=log, stderr=log,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProductUnavailable(
                    f"daemon exited {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(OSError, ValueError):
                if request(self.layout.socket, {"op": "ping"}, timeout=2).get("ok"):
                    return
            time.sleep(0.05)
        self.stop()
        raise ProductUnavailable(f"daemon did not answer ping in {timeout} s: {self.tail()}")

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def wait_drained(self, timeout: float) -> float | None:
        """Seconds until nothing is pending or in flight, or None on timeout."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            totals = queue_totals(self.layout.socket)
            if totals.get("pending", 0) == 0 and totals.get("inflight", 0) == 0:
                return time.monotonic() - start
            time.sleep(0.05)
        return None

    def stop(self, timeout: float = 60) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.layout.socket.unlink(missing_ok=True)


@contextlib.contextmanager
def running_daemon(layout: Layout, nix: IsolatedNix,
                   wrap: Callable[[list[str]], list[str]] = list) -> Iterator[Daemon]:
    daemon = Daemon(layout, nix, wrap)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def spooled_paths(layout: Layout) -> int:
    """Output paths in the spool (not the `DRV^*` line each hook run adds)."""
    return sum(1 for f in layout.spool_dir.glob("*.spool")
               for line in f.read_text(encoding="utf-8").split() if not line.endswith("^*"))


def narinfo_count(cache_dir: Path) -> int:
    return sum(1 for _ in cache_dir.glob("*.narinfo"))
