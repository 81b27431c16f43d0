"""`nix-push-queue drop` (not implemented yet)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping


def register(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults()


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    raise NotImplementedError("drop")
