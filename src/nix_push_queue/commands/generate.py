"""`nix-push-queue generate CONFIG --out DIR`: render and install the host's files.

Writes the nix.conf fragment, the post-build-hook wrapper, the systemd units and the daemon's
config under DIR (all or nothing), and with `--include-into` adds one `!include` line to an
existing nix.conf. `--remove-include FILE` takes that line out again and releases the GC
roots of whatever is still queued (uninstall: docs/gc-roots.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ._types import seconds
from .validate import EVAL_TIMEOUT_HELP

if TYPE_CHECKING:
    from ..config import Config
    from ..generate import GenerateOptions


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, nargs="?",
                        help="config file (.yaml, .yml, .json or .nix)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="output root; files go to DIR/etc/... (use / to install in place)")
    parser.add_argument("--prefix", default="/", metavar="DIR",
                        help="where the tree will be installed, for paths written inside the "
                             "files (default: /; the NixOS module passes its $out)")
    parser.add_argument("--executable", default=None, metavar="PATH",
                        help="nix-push-queue on the target host "
                             "(default: /usr/local/bin/nix-push-queue)")
    parser.add_argument("--config-path", default=None, metavar="PATH",
                        help="where the daemon's config will be (default: PREFIX/etc/"
                             "nix-push-queue/config.json)")
    parser.add_argument("--flavor", choices=("debian", "nixos"), default="debian",
                        help="nixos: units under lib/systemd/system for systemd.packages")
    parser.add_argument("--include-into", type=Path, metavar="NIX_CONF",
                        help="add `!include PREFIX/etc/nix/nix-push-queue.conf` to this file")
    parser.add_argument("--remove-include", type=Path, metavar="NIX_CONF",
                        help="remove that line again and release the queue's GC roots (needs "
                             "no CONFIG; reads nix.state_dir from the installed config.json)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite files that nix-push-queue did not write")
    parser.add_argument("--eval-timeout", type=seconds, default=None, metavar="SECONDS",
                        help=EVAL_TIMEOUT_HELP)
    parser.add_argument("--allow-untrusted-hook", action="store_true",
                        help="write the files even though the trust check fails (a file root "
                             "would run, or the daemon trusts, can be changed by another "
                             "user; docs/security.md); the problems are still printed")
    parser.add_argument("--dry-run", action="store_true",
                        help="check everything and print what would change; write nothing")


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ..generate import FRAGMENT, GenerateOptions
    from ..generate.include import remove_include

    options = GenerateOptions(flavor=args.flavor, prefix=args.prefix,
                              config_path=args.config_path)
    if args.executable is not None:
        options = replace(options, executable=args.executable)
    fragment = options.installed(FRAGMENT)
    if args.remove_include is not None:
        if args.config is not None:
            return _usage("give either CONFIG or --remove-include, not both")
        if args.dry_run:
            print(f"would remove `!include {fragment}` from {args.remove_include}")
        elif remove_include(args.remove_include, fragment):
            print(f"{args.remove_include}: removed `!include {fragment}`")
        else:
            print(f"{args.remove_include}: no `!include {fragment}` line; unchanged")
        _release_roots(options, args.dry_run)
        return 0
    if args.config is None or args.out is None:
        return _usage("CONFIG and --out DIR are required")
    if args.include_into is not None and args.flavor == "nixos":
        return _usage("--include-into is for non-NixOS hosts; NixOS sets nix.settings")
    return _generate(args, options, fragment)


def _release_roots(options: GenerateOptions, dry_run: bool) -> None:
    """Uninstall leaves no GC roots: the queue's directory under the state dir the installed
    config names (the schema's default without one)."""
    import json

    from ..config.schema import load_schema
    from ..wire import gcroots

    config = Path(options.paths().config)
    try:
        state = json.loads(config.read_text("utf-8"))["nix"]["state_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        state = load_schema()["$defs"]["nix"]["properties"]["state_dir"]["default"]
    directory = gcroots.roots_dir(str(state))
    if dry_run:
        print(f"would release {len(gcroots.list_roots(directory))} GC root(s) in {directory}")
        return
    try:
        released = gcroots.remove_all(directory)
    except OSError as exc:
        from ..errors import OutputError

        raise OutputError(f"cannot release the GC roots in {directory}: {exc.strerror}; "
                          f"remove that directory by hand (as root)") from exc
    print(f"released {released} GC root(s) in {directory}")


def _generate(args: argparse.Namespace, options: GenerateOptions, fragment: str) -> int:
    from ..config import load_config_source, locate
    from ..config.limits import EVAL_TIMEOUT
    from ..errors import ConfigError
    from ..generate import HOOK, generate_files
    from ..generate.include import add_include, check_include
    from ..generate.writer import write_tree

    timeout = EVAL_TIMEOUT if args.eval_timeout is None else args.eval_timeout
    config, source = load_config_source(args.config, eval_timeout=timeout)
    try:
        files = generate_files(config, options)
    except ConfigError as exc:
        raise locate(exc, source) from None
    _check_trust(args, options, config, next((f.text for f in files if f.path == HOOK), None))
    added: list[bool] = []

    def include() -> None:
        # The last step of the tree's transaction: should it fail, the old tree is put back.
        if args.include_into is not None:
            added.append(add_include(args.include_into, fragment))

    if args.include_into is not None:
        check_include(args.include_into, fragment)  # fail before writing anything
    changes = write_tree(args.out, files, force=args.force, dry_run=args.dry_run,
                         then=include)
    verb = "would " if args.dry_run else ""
    for change in changes:
        print(f"{verb}{change.action:9} {args.out / change.path}")
    if not args.dry_run and any(c.path.endswith((".service", ".socket", ".path"))
                                and c.action != "unchanged" for c in changes):
        print("units changed: run `systemctl daemon-reload`, then "
              "`systemctl enable --now nix-push-queue.socket nix-push-queue.path "
              "nix-push-queue.service`")
    if not args.dry_run and args.flavor == "debian" and any(
            c.path.endswith(("tmpfiles.d/nix-push-queue.conf", "sysusers.d/nix-push-queue.conf"))
            and c.action != "unchanged" for c in changes):
        print("GC roots directory changed: run `systemd-sysusers` and `systemd-tmpfiles "
              "--create`, before the daemon starts (docs/gc-roots.md)")
    if args.include_into is not None:
        if args.dry_run:
            print(f"would include {fragment} from {args.include_into}")
        elif added and added[0]:
            print(f"{args.include_into}: added `!include {fragment}`")
        else:
            print(f"{args.include_into}: already includes {fragment}")
    return 0


def _check_trust(args: argparse.Namespace, options: GenerateOptions, config: Config,
                 wrapper: str | None) -> None:
    """Refuse (or, with --allow-untrusted-hook, warn on every run) when root would run, or
    the daemon trust, a file another user can change. The NixOS flavor is rendered inside a
    Nix build, which is not the host: there every file is a store path, and the daemon
    checks the host when it starts (`status` shows it)."""
    import sys

    from ..errors import TrustError
    from ..trust import Subjects, check, owners_for

    if args.flavor == "nixos":
        return
    in_place = args.out.resolve() == Path(options.prefix).resolve()
    hook_dir = str(Path(options.paths().hook).parent)
    report = check(Subjects(config=config if config.targets else None,
                            wrapper_text=wrapper,  # what it runs, as written
                            wrapper_dir=hook_dir if in_place and wrapper else None,
                            config_file=options.paths().config if in_place else None),
                   owners_for(config))
    if report.ok:
        return
    if not args.allow_untrusted_hook:
        raise TrustError("\n".join([*report.lines()[1:], "refusing to write the files: fix "
                                     "the above, or pass --allow-untrusted-hook to write "
                                     "them anyway"]))
    for line in report.lines():
        print(f"warning: {line} (--allow-untrusted-hook)", file=sys.stderr)


def _usage(message: str) -> int:
    import sys

    print(f"nix-push-queue generate: {message}", file=sys.stderr)
    return 2
