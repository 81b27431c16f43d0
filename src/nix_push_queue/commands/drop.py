"""`nix-push-queue drop (--all | --target NAME | PATH...)`: delete dead letters, and
acknowledge lost paths (garbage-collected before their upload; `status` counts them as GONE
and `wait` fails while any is left). Deleting is final, so dropping everything needs an
explicit --all."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from ._common import add_endpoint_args, connect


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH", help="only these store paths")
    parser.add_argument("--target", default=None, help="only this target")
    parser.add_argument("--all", action="store_true",
                        help="every dead letter and lost path of every target")
    add_endpoint_args(parser)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if not (args.all or args.target or args.paths):
        print("nix-push-queue drop: name a --target, PATHs, or --all", file=sys.stderr)
        return 2
    client, _ = connect(args)
    changed = client.drop(args.target, args.paths or None)
    print(f"{changed} dead letter(s) or lost path(s) dropped")
    return 0
