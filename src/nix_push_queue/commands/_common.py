"""Arguments shared by the control commands (push, status, wait, retry, drop)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..client.control import DEFAULT_CONFIG, ControlClient, Endpoint, endpoint


def add_endpoint_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help=f"the daemon's config file (default {DEFAULT_CONFIG}); "
                             "gives the socket, store and spool directories")
    parser.add_argument("--socket", default=None, help="the daemon's socket (overrides the "
                        "config's queue.socket)")


def connect(args: argparse.Namespace) -> tuple[ControlClient, Endpoint]:
    ep = endpoint(args.config, args.socket)
    return ControlClient(ep.socket), ep
