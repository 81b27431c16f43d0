"""`nix-push-queue hook` (not implemented yet)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence


def register(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults()


def main_fast(argv: Sequence[str], env: Mapping[str, str]) -> int:
    return 0


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    return main_fast([], env)
