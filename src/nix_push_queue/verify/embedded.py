"""`verify` without a config: the whole chain in a temporary directory, nothing else touched.

An isolated Nix whose nix.conf runs the real hook as post-build-hook, a file:// cache with a
fresh key pair, a config generated from the schema's defaults plus that target, and the real
daemon (`nix-push-queue daemon --config`) as a subprocess: build -> hook -> daemon -> cache
-> delete -> substitute back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..client.control import ControlClient
from ..config import Config, load_document
from ..errors import NpqError, VerifyFailed
from ..generate import hook_wrapper
from ..nix.isolated import IsolatedNix
from .procedure import Context, Procedure, daemon_view, describe_target, queue_waiter

DAEMON_START_TIMEOUT = 60.0
DAEMON_STOP_TIMEOUT = 30.0
KEY_NAME = "npq-verify-1"


@dataclass(frozen=True)
class Embedded:
    root: Path
    nix: IsolatedNix
    config: Config
    config_file: Path

    @property
    def daemon_log(self) -> Path:
        return self.root / "daemon.log"


def prepare(root: Path, program: Sequence[str]) -> Embedded:
    """Create the isolated Nix, key pair, cache, config and hook under `root`.

    `program` runs this CLI (e.g. `[python, -m, nix_push_queue]`), for the hook and daemon.
    """
    nix = IsolatedNix.create(root / "nix")
    keys = root / "keys"
    keys.mkdir(mode=0o700)
    secret, public = nix.generate_key(KEY_NAME, keys)
    document = {
        "version": 1,
        "targets": [{"name": "local", "url": f"file://{root / 'cache'}",
                     "secret_key_file": str(secret), "public_key": public}],
        "nix": {"store_dir": str(nix.store_dir), "state_dir": str(nix.state_dir)},
        "queue": {"socket": str(root / "run" / "hook.sock"),
                  "state_dir": str(root / "state"), "spool_dir": str(root / "spool")},
    }
    config = load_document(document, "<embedded default>")
    config_file = root / "config.json"
    config_file.write_text(json.dumps(config.document, indent=2) + "\n", encoding="utf-8")
    hook = root / "post-build-hook"
    hook.write_text(hook_wrapper(config, program), encoding="utf-8")
    hook.chmod(0o755)
    with nix.conf_file.open("a", encoding="utf-8") as conf:
        conf.write(f"post-build-hook = {hook}\n")
    return Embedded(root, nix, config, config_file)


@contextlib.contextmanager
def running_daemon(embedded: Embedded, program: Sequence[str],
                   base_env: Mapping[str, str]) -> Iterator[ControlClient]:
    """The real daemon for the run; stopped with SIGTERM (then SIGKILL) afterwards."""
    with embedded.daemon_log.open("ab") as log:
        proc = subprocess.Popen(
            [*program, "daemon", "--config", str(embedded.config_file)],
            env=embedded.nix.env(base_env), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
    try:
        client = ControlClient(embedded.config.queue.socket, timeout=10)
        deadline = time.monotonic() + DAEMON_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise VerifyFailed("setup", f"the daemon exited {proc.returncode}: "
                                   + _tail(embedded.daemon_log))
            try:
                client.ping()
                break
            except NpqError:
                if time.monotonic() > deadline:
                    raise VerifyFailed("setup", "the daemon did not answer within "
                                       f"{DAEMON_START_TIMEOUT:g} s: "
                                       + _tail(embedded.daemon_log)) from None
                time.sleep(0.05)
        yield client
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=DAEMON_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=DAEMON_STOP_TIMEOUT)


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def remove_tree(root: Path) -> None:
    """Delete a tree holding a Nix store, whose directories Nix made read-only."""
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o700)
    shutil.rmtree(root, ignore_errors=True)


def run(program: Sequence[str], base_env: Mapping[str, str], *, keep: bool, timeout: float,
        write: Callable[[str], None], temp_dir: str | None = None) -> Path:
    """The embedded default, start to finish; returns the temp dir (gone unless `keep`)."""
    root = Path(tempfile.mkdtemp(prefix="npq-verify-", dir=temp_dir))
    try:
        embedded = prepare(root, program)
        target = embedded.config.targets[0]
        write(f"embedded default in {root}: isolated Nix, {describe_target(target)}\n")
        with running_daemon(embedded, program, base_env) as client:
            ctx = Context(env=embedded.nix.env(base_env), timeout=timeout, write=write,
                          diagnose=lambda name: (f"{daemon_view(client, name)}; log: "
                                                 f"{_tail(embedded.daemon_log, 3)}"))
            targets = embedded.config.targets
            Procedure(ctx, targets, queue_waiter(client, targets, base_env, timeout)).run()
    finally:
        if keep:
            write(f"kept {root} (config.json, daemon.log, nix/, cache/)\n")
        else:
            remove_tree(root)
    return root
