"""`nix-push-queue validate CONFIG`: report every problem in a config, or say it is fine."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

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
    from ..config import load_config
    from ..config.limits import EVAL_TIMEOUT

    timeout = EVAL_TIMEOUT if args.eval_timeout is None else args.eval_timeout
    config = load_config(args.config, eval_timeout=timeout)
    if args.print_json:
        print(json.dumps(config.document, indent=2, sort_keys=True))
    else:
        targets = ", ".join(t.name for t in config.targets) or "none (consumer only)"
        print(f"{args.config}: ok (targets: {targets})")
    return 0
