"""`nix-push-queue validate CONFIG`: report every problem in a config, or say it is fine."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config, Source

from ._types import seconds

# Mirrors config.limits.EVAL_TIMEOUT, which this module does not import (start-up time).
EVAL_TIMEOUT_HELP = ("a .nix config must evaluate within this long, or it is stopped "
                     "(default 30)")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="config file (.yaml, .yml, .json or .nix)")
    parser.add_argument(
        "--print", dest="print_json", action="store_true",
        help="print the validated config with every default filled in, as JSON",
    )
    parser.add_argument("--eval-timeout", type=seconds, default=None, metavar="SECONDS",
                        help=EVAL_TIMEOUT_HELP)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ..config import load_config_source
    from ..config.limits import EVAL_TIMEOUT

    timeout = EVAL_TIMEOUT if args.eval_timeout is None else args.eval_timeout
    config, source = load_config_source(args.config, eval_timeout=timeout)
    if args.print_json:
        print(json.dumps(config.document, indent=2, sort_keys=True))
    else:
        targets = ", ".join(t.name for t in config.targets) or "none (consumer only)"
        print(f"{args.config}: ok (targets: {targets})", flush=True)
    _warn_s3(config, source, env)
    return 0


def _warn_s3(config: Config, source: Source, env: Mapping[str, str]) -> None:
    """s3 targets this host's Nix cannot serve: warned on stderr, never an error."""
    from ..config.semantic import s3_warnings
    from ..config.source import format_path
    from ..errors import ConfigProblem
    from ..nix import stores

    if not any(stores.is_s3(t) for t in config.targets):
        return
    support = stores.s3_support(config.nix.nix_bin_dir, env)
    for field, message in s3_warnings(config.document, support):
        problem = ConfigProblem(source.file, source.line_of(field), format_path(field),
                                f"warning: {message}")
        print(problem, file=sys.stderr)
