"""`nix-push-queue hook`: what nix.conf's post-build-hook runs after every build.

cli.py calls `main_fast` before building any argparse tree; arguments are parsed by hand here
so the hook loads nothing it does not need. It always returns 0: a failing post-build-hook
stops Nix's build loop.
"""

from __future__ import annotations

TYPE_CHECKING = False  # mypy reads this name as true; at run time `typing` stays unloaded
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence

USAGE = """\
usage: nix-push-queue hook [--config FILE] [--socket PATH] [--spool-dir DIR]
                           [--store-dir DIR] [--timeout SECONDS] [--nix-bin-dir DIR]
                           [--state-dir DIR] [--no-gc-roots]

Reads OUT_PATHS and DRV_PATH from the environment (as Nix's post-build-hook sets them),
makes each store path a GC root in STATE_DIR/gcroots/nix-push-queue/ (unless
--no-gc-roots) and hands the paths to the daemon; if it does not answer within the timeout,
writes them to the spool. Flags override the values of --config (the daemon's config.json); anything
given by neither takes the schema's default. Always exits 0.
"""

# flag -> setting name (hook.SETTING_KEYS); --config is handled apart.
_FLAGS = {
    "--socket": "socket",
    "--spool-dir": "spool_dir",
    "--store-dir": "store_dir",
    "--timeout": "timeout",
    "--nix-bin-dir": "nix_bin_dir",
    "--state-dir": "state_dir",
}
NO_ROOTS = "--no-gc-roots"


def register(parser: argparse.ArgumentParser) -> None:
    # Listed in `--help`; the real parsing is main_fast's, reached before argparse runs.
    parser.add_argument("--config", metavar="FILE", help="the daemon's config.json")
    for flag in _FLAGS:
        parser.add_argument(flag)
    parser.add_argument(NO_ROOTS, action="store_true")


def parse_argv(argv: Sequence[str]) -> tuple[dict[str, object], str | None, list[str]]:
    """(settings given, config path, problems). Accepts `--flag VALUE` and `--flag=VALUE`."""
    given: dict[str, object] = {}
    config: str | None = None
    problems: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == NO_ROOTS:
            given["gc_roots"] = False
            continue
        flag, eq, value = arg.partition("=")
        if flag not in _FLAGS and flag != "--config":
            problems.append(f"ignoring unknown argument {arg[:100]!r}")
            continue
        if not eq:
            if not args:
                problems.append(f"{flag} needs a value")
                break
            value = args.pop(0)
        if flag == "--config":
            config = value
        elif flag == "--timeout":
            try:
                given["timeout"] = float(value)
            except ValueError:
                problems.append(f"ignoring --timeout {value[:40]!r}: not a number")
        else:
            given[_FLAGS[flag]] = value
    return given, config, problems


def main_fast(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """The hook. Returns 0 whatever happens, including bugs (they are logged)."""
    try:
        if "-h" in argv or "--help" in argv:
            import sys

            sys.stdout.write(USAGE)
            return 0
        from ..client import hook

        given, config, problems = parse_argv(argv)
        for problem in problems:
            hook.log(problem)
        settings = hook.resolve_settings(given, config, env)
        hook.run(settings, env.get("OUT_PATHS", ""), env.get("DRV_PATH", ""), env)
    except BaseException as exc:  # whatever happens, Nix must keep building
        try:
            from ..client.hook import log

            log(f"unexpected error: {type(exc).__name__}: {exc}")
        except BaseException:  # noqa: S110 - even logging may fail; exit 0 anyway
            pass
    return 0


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    # Reached only if cli.py's fast path is bypassed; rebuild argv from the parsed flags.
    argv: list[str] = []
    if args.config:
        argv += ["--config", args.config]
    for flag, key in _FLAGS.items():
        value = getattr(args, key)
        if value is not None:
            argv += [flag, value]
    if args.no_gc_roots:
        argv.append(NO_ROOTS)
    return main_fast(argv, env)
