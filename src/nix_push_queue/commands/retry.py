"""`nix-push-queue retry [--target NAME] [PATH...]`: dead letters back to pending (all of
them when neither is given)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from ._common import add_endpoint_args, connect


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="only these store paths (or links to them, such as ./result)")
    parser.add_argument("--target", default=None, help="only this target")
    add_endpoint_args(parser)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ..client.pushpaths import named_paths

    client, ep = connect(args)
    paths = named_paths(args.paths, ep.store_dir) if args.paths else None
    changed = client.retry(args.target, paths)
    print(f"{changed} dead letter(s) back to pending")
    return 0
