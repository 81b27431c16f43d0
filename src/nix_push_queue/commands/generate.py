"""`nix-push-queue generate` (not implemented yet)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="config file (.yaml, .yml, .json or .nix)")
    parser.add_argument(
        "--print", dest="print_json", action="store_true",
        help="print the validated config with every default filled in, as JSON",
    )


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ..config import load_config

    config = load_config(args.config)
    if args.print_json:
        print(json.dumps(config.document, indent=2, sort_keys=True))
    else:
        targets = ", ".join(t.name for t in config.targets) or "none (consumer only)"
        print(f"{args.config}: ok (targets: {targets})")
    return 0
