"""`nix-push-queue daemon --config FILE`: run the queue daemon in the foreground.

Reads the systemd environment here (the library never does): LISTEN_FDS/LISTEN_PID for
socket activation (fd 3), NOTIFY_SOCKET for Type=notify, CREDENTIALS_DIRECTORY for keys
loaded with LoadCredential.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from ..client.control import DEFAULT_CONFIG
from ._types import seconds

SD_LISTEN_FDS_START = 3


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=Path(DEFAULT_CONFIG),
                        help=f"the daemon's config (default {DEFAULT_CONFIG})")
    parser.add_argument("--stop-grace", type=seconds, default=None, metavar="SECONDS",
                        help="override queue.stop_grace: on SIGTERM, how long running uploads "
                             "may take before they are killed and go back to pending")


def listen_fds(env: Mapping[str, str], pid: int) -> tuple[int, ...]:
    """The fds systemd passed (sd_listen_fds): only when LISTEN_PID names this process."""
    if env.get("LISTEN_PID", "") != str(pid):
        return ()
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        return ()
    return tuple(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + max(0, count)))


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ..config import load_config
    from ..daemon.main import DaemonOptions
    from ..daemon.main import run as run_daemon

    config = load_config(args.config)
    if not args.verbose:
        logging.getLogger().setLevel(config.service.log_level.upper())
    options = DaemonOptions(
        config=config,
        env=env,
        credentials_dir=env.get("CREDENTIALS_DIRECTORY") or None,
        listen_fds=listen_fds(env, os.getpid()),
        notify_socket=env.get("NOTIFY_SOCKET") or None,
        config_file=str(args.config.absolute()),
    )
    if args.stop_grace is not None:
        from dataclasses import replace

        options = replace(options, stop_grace=args.stop_grace)
    return run_daemon(options)
