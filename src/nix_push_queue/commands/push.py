"""`nix-push-queue push PATH... [--closure] [--wait [--timeout S]]`: enqueue store paths by
hand, e.g. substituted paths the post-build hook never sees. Falls back to the spool (with a
warning) when the daemon does not answer.

With --wait: block until exactly these paths (and what --closure added) are on every target,
ahead of the daemon's background backlog, with progress on stderr; not until the whole queue
is empty. Exits non-zero naming each path that went dead or was lost (see waitpaths.py).
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
                        help="then block until these paths are on every target (not the "
                             "whole queue: see `wait`)")
    parser.add_argument("--timeout", type=seconds, default=None, metavar="SECONDS",
                        help="with --wait: give up after this long")
    add_endpoint_args(parser)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ..client.control import push
    from ..client.pushpaths import store_paths
    from ..errors import DaemonUnavailable

    client, ep = connect(args)
    paths = store_paths(args.paths, ep, closure=args.closure)
    queued, skipped, spooled = push(client, paths, ep)
    if spooled:
        print(f"spooled {len(paths)} path(s); the daemon will queue them when it starts")
        if args.wait:
            raise DaemonUnavailable(f"cannot wait: the daemon on {ep.socket} does not answer "
                                    "(the paths are safe in the spool, not in any cache yet)")
        return 0
    print(f"queued {queued}, already queued or excluded {skipped} "
          f"({len(paths)} path(s))", flush=True)
    if args.wait:
        from .wait import wait_for_paths

        wait_for_paths(client, paths, args.timeout, "push", env)
    return 0
