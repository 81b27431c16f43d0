"""`nix-push-queue wait [--timeout S]`: block until nothing is pending or uploading (a
barrier for CI jobs). Exit 0 when drained; WaitTimeout on timeout; DeadLetters when the
queue drained but dead letters remain.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from ._common import add_endpoint_args, connect
from ._types import seconds


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=seconds, default=None, metavar="SECONDS",
                        help="give up after this long (default: wait forever)")
    add_endpoint_args(parser)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ..client.control import wait_drained

    client, ep = connect(args)
    stats = wait_drained(client, timeout=args.timeout, spool_dir=ep.spool_dir)
    done = sum(s.done for s in stats.values())
    print(f"queue empty ({done} path(s) uploaded over the queue's lifetime)")
    return 0
