"""`nix-push-queue verify [--config FILE] [--target NAME] [--keep]`: the manual's test.

With a config: on this host's Nix and daemon, against each configured target (or the named
ones). Without: the embedded default, a throwaway Nix store, file:// cache, key pair and
daemon under a temporary directory. Exits non-zero (VerifyFailed) at the first failing step.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from ._types import seconds


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="the config to verify (as given to `generate`/the daemon); "
                             "without it, run the embedded default in a temporary store")
    parser.add_argument("--target", action="append", default=[], metavar="NAME",
                        help="only this target (repeatable); default: every target")
    parser.add_argument("--keep", action="store_true",
                        help="embedded default: keep the temporary directory for inspection")
    parser.add_argument("--timeout", type=seconds, default=300.0, metavar="SECONDS",
                        help="how long to wait for the queue to push the path "
                             "(default %(default)g)")


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    started = time.monotonic()
    if args.config is None:
        from ..verify.embedded import run as run_embedded

        if args.target:
            _write("--target needs --config; the embedded default has one target\n")
            return 2
        # The hook and the daemon are this same program, run by the same interpreter.
        program = [sys.executable, "-m", "nix_push_queue"]
        run_embedded(program, env, keep=args.keep, timeout=args.timeout, write=_write,
                     temp_dir=env.get("TMPDIR"))
    else:
        from ..config import load_config
        from ..verify.procedure import run_with_config

        config = load_config(args.config)
        run_with_config(config, args.target, env, timeout=args.timeout, write=_write,
                        config_file=str(args.config))
    _write(f"verify: all steps passed ({time.monotonic() - started:.1f} s)\n")
    return 0
