"""`nix-push-queue validate CONFIG`: report every problem in a config, or say it is fine."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

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
    parser.add_argument("--no-trust-check", dest="trust", action="store_false",
                        help="skip the check of this host's files (the post-build-hook nix.conf "
                             "names, the config, keys, spool and state directories: "
                             "docs/security.md), e.g. when validating inside a Nix build")


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
    _warn_s3(config, source, env, sys.stderr if args.print_json else sys.stdout)
    if args.trust:
        check_host(config, str(args.config), env, print_to=sys.stderr if args.print_json
                   else sys.stdout)
    return 0


def check_host(config: Config, config_file: str, env: Mapping[str, str],
               print_to: TextIO) -> None:
    """The trust check for the host this runs on: the post-build-hook nix.conf names and the
    files the daemon trusts. Problems raise TrustError; what could not be checked is said."""
    from ..errors import TrustError
    from ..nix import settings
    from ..trust import Subjects, check, owners_for

    wrapper: str | None = None
    try:
        wrapper = settings.post_build_hook(env, config.nix.nix_bin_dir)
    except settings.SettingsError as exc:
        unknown: str | None = f"trust: note: the post-build-hook is not checked: {exc}"
    else:
        unknown = None if wrapper else ("trust: note: nix.conf sets no post-build-hook on "
                                        "this host yet; run validate again after generate")
    import os

    # A config another user owns is theirs to validate; root trusts it only if root's own.
    mine = os.geteuid() == 0
    report = check(Subjects(config=config, config_file=config_file if mine else None,
                            wrapper=wrapper), owners_for(config))
    if not report.ok:
        raise TrustError("\n".join(report.lines()))
    for line in [report.summary(), *([unknown] if unknown else []),
                 *(f"trust: note: {n}" for n in report.notes)]:
        print(line, file=print_to)


def _warn_s3(config: Config, source: Source, env: Mapping[str, str], out: TextIO) -> None:
    """Which transport each s3 target uses and why (on `out`: stderr under --print, whose
    stdout is the JSON), and what this host's Nix or
    Python cannot do for it (warnings on stderr, never an error)."""
    from ..config.semantic import s3_warnings
    from ..config.source import format_path
    from ..daemon.transport import boto3_missing, choose_all
    from ..errors import ConfigProblem
    from ..nix import stores

    if not any(stores.is_s3(t) for t in config.targets):
        return
    support, choices = choose_all(config.targets, config.nix.nix_bin_dir, env)
    for i, target in enumerate(config.targets):
        if stores.is_s3(target):
            print(f"targets[{i}] ({target.name}): transport {choices[target.name]}",
                  file=out)
    names = {name: choice.name for name, choice in choices.items()}
    for field, message in s3_warnings(config.document, support, names, boto3_missing()):
        problem = ConfigProblem(source.file, source.line_of(field), format_path(field),
                                f"warning: {message}")
        print(problem, file=sys.stderr)
