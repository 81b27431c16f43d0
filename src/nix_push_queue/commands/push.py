"""`nix-push-queue push PATH... [--closure] [--force] [--wait [--timeout S]]`: enqueue store
paths by hand, e.g. substituted paths the post-build hook never sees. Falls back to the spool
(with a warning) when the daemon does not answer.

A path the queue counts as uploaded is looked up in each cache (one narinfo lookup), and
queued again where the cache lacks it: a cache can lose paths. --force queues it again
everywhere without looking; `nix copy` then still skips a path whose narinfo the cache has
(Nix's copyPaths asks the destination first), so a damaged NAR is replaced by deleting its
narinfo and pushing again.

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
                        help="store paths, links to them such as ./result, or a built "
                             "derivation's outputs as DRV^out or DRV^* (uploaded with their "
                             "realisations; DRV!out accepted)")
    parser.add_argument("--closure", action="store_true",
                        help="also push everything the paths reference "
                             "(nix-store --query --requisites)")
    parser.add_argument("--force", action="store_true",
                        help="queue again even what the queue counts as uploaded, without "
                             "looking it up (without it, such a path is looked up in each "
                             "cache and queued again only where it is missing); nix copy "
                             "still skips a path whose narinfo the cache has")
    parser.add_argument("--wait", action="store_true",
                        help="then block until these paths are on every target (not the "
                             "whole queue: see `wait`)")
    parser.add_argument("--timeout", type=seconds, default=None, metavar="SECONDS",
                        help="with --wait: give up after this long")
    add_endpoint_args(parser)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ..client import pushderivations
    from ..client.control import push
    from ..client.pushpaths import store_paths
    from ..errors import DaemonUnavailable

    client, ep = connect(args)
    plain, drv_args = pushderivations.split_args(args.paths)
    derivations = pushderivations.resolve(drv_args, ep, env)
    paths = store_paths(plain, ep, closure=args.closure) if plain else []
    queued, skipped, spooled = push(client, [*paths, *derivations.entries], ep,
                                    force=args.force, roots=[*paths, *derivations.outputs])
    paths = list(dict.fromkeys([*paths, *derivations.outputs]))
    if spooled:
        print(f"spooled {len(paths)} path(s); the daemon queues them from its spool (when it "
              "starts, or once it can)")
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
