"""The command line: the only place that reads argv or the environment, or exits.

Each subcommand lives in `commands/<name>.py` with `register(parser)` and
`run(args, env) -> int`. Modules are imported lazily so `hook`, which runs after every build,
pays for nothing but itself.
"""

from __future__ import annotations

import os
import sys

# The hook's fast path must not load argparse, logging, importlib or typing (start-up time
# after every build); they are imported where used. mypy reads TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
    from types import ModuleType

# name -> one-line help. Order is the order of `--help`.
COMMANDS: dict[str, str] = {
    "validate": "check a config file (YAML, JSON or Nix) and report every problem",
    "generate": "render nix.conf fragment, systemd units and daemon config from a config",
    "daemon": "run the queue daemon (systemd socket activation aware)",
    "hook": "post-build-hook client: hand OUT_PATHS to the daemon, never fail",
    "push": "enqueue store paths (or their closures) by hand",
    "status": "show queue depth, in-flight uploads, dead letters and last errors",
    "wait": "block until the queue is empty (for CI jobs)",
    "retry": "move dead letters back to pending",
    "drop": "delete dead letters from the queue",
    "verify": "build, push, delete and substitute back: the manual's test, end to end",
}


def _module(name: str) -> ModuleType:
    import importlib

    return importlib.import_module(f"nix_push_queue.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    import argparse

    from . import __version__

    parser = argparse.ArgumentParser(
        prog="nix-push-queue",
        description="Push Nix build outputs to binary caches from a durable queue.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in COMMANDS.items():
        module = _module(name)
        module.register(sub.add_parser(name, help=summary, description=summary))
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    environ = dict(os.environ if env is None else env)
    if args_list[:1] == ["hook"]:
        # Fast path: no argparse tree, no other command modules, and never a non-zero exit.
        from .commands import hook

        return hook.main_fast(args_list[1:], environ)
    import logging

    args = build_parser().parse_args(args_list)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from .errors import ConfigError, NpqError

    try:
        code: int = _module(args.command).run(args, environ)
    except ConfigError as exc:
        # FILE:LINE: field: message, one per line, as compilers do, so editors can jump there.
        print(exc, file=sys.stderr)
        return exc.exit_code
    except NpqError as exc:
        print(f"nix-push-queue {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code
