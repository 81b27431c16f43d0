"""`nix-push-queue drop (--all | --target NAME | PATH... | --orphaned)`: delete dead letters,
and acknowledge lost paths (garbage-collected before their upload; `status` counts them as
GONE and `wait` fails while any is left). Deleting is final, so dropping everything needs an
explicit --all. `--orphaned` deletes every row, in any state, of targets no longer in the
config (`status` marks them ORPHANED)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from ._common import add_endpoint_args, connect


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="only these store paths (or links to them, such as ./result), "
                             "or derivations (DRV^*) whose outputs were not resolved")
    parser.add_argument("--target", default=None, help="only this target")
    parser.add_argument("--all", action="store_true",
                        help="every dead letter and lost path of every target")
    parser.add_argument("--orphaned", action="store_true",
                        help="every row of targets no longer in the config, in any state")
    add_endpoint_args(parser)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.orphaned and (args.all or args.target or args.paths):
        print("nix-push-queue drop: --orphaned takes no --target, PATHs or --all",
              file=sys.stderr)
        return 2
    if not (args.all or args.target or args.paths or args.orphaned):
        print("nix-push-queue drop: name a --target, PATHs, --all or --orphaned",
              file=sys.stderr)
        return 2
    from ..client.pushpaths import named_paths

    client, ep = connect(args)
    if args.orphaned:
        changed = client.drop_orphaned()
        print(f"{changed} row(s) of targets no longer configured dropped")
        return 0
    paths = named_paths(args.paths, ep.store_dir, derivations=True) if args.paths else None
    changed = client.drop(args.target, paths)
    print(f"{changed} dead letter(s) or lost path(s) dropped")
    return 0
