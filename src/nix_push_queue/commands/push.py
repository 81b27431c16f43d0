"""`nix-push-queue push PATH... [--closure] [--wait]`: enqueue store paths by hand, e.g.
substituted paths the post-build hook never sees. Falls back to the spool (with a warning)
when the daemon does not answer.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from ._common import add_endpoint_args, connect
from ._types import seconds


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="store paths, or links to them such as ./result")
    parser.add_argument("--closure", action="store_true",
                        help="also push everything the paths reference "
                             "(nix-store --query --requisites)")
    parser.add_argument("--wait", action="store_true",
                        help="then block until the queue is empty (as `wait`)")
    parser.add_argument("--timeout", type=seconds, default=None, metavar="SECONDS",
                        help="with --wait: give up after this long")
    add_endpoint_args(parser)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ..client.control import push, wait_drained
    from ..client.pushpaths import store_paths

    client, ep = connect(args)
    paths = store_paths(args.paths, ep, closure=args.closure)
    queued, skipped, spooled = push(client, paths, ep)
    if spooled:
        print(f"spooled {len(paths)} path(s); the daemon will queue them when it starts")
        return 0
    print(f"queued {queued}, already queued or excluded {skipped} "
          f"({len(paths)} path(s))")
    if args.wait:
        wait_drained(client, timeout=args.timeout, spool_dir=ep.spool_dir)
        print("queue empty")
    return 0
