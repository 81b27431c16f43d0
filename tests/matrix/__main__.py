"""Build the matrix's roots, or run a command inside one.

    python -m tests.matrix build [SUITE...]        build (or find) the roots and their venvs
    python -m tests.matrix path SUITE              print a root's directory
    python -m tests.matrix shell SUITE -- CMD...   run CMD in the root, in the checkout
    python -m tests.matrix test [--legs SPEC] [--host all|none|rest] -- PYTEST-ARGS...
                                                   the host leg, then `pytest -m nix` per root

SUITE is a Debian suite (bookworm, trixie, sid) or a Nix version (2.8, 2.26, 2.34).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from .chroot import SRC, run_in_root
from .roots import CACHE, ensure_root, suite
from .venv import REPO, ensure_venv


def shell(name: str, argv: list[str]) -> int:
    """Run argv in the root with the checkout at /src and a /tmp of its own; its exit code."""
    root = ensure_root(suite(name))
    venv = ensure_venv(root, CACHE)
    here = Path.cwd().resolve()
    cwd = SRC + "/" + str(here.relative_to(REPO)) if here.is_relative_to(REPO) else SRC
    # A /tmp per run: concurrent runs in one root do not meet, and the cached root stays clean.
    tmp = Path(tempfile.mkdtemp(prefix=f"npq-matrix-{root.name}-", dir="/var/tmp"))
    tmp.chmod(0o1777)
    path = f"{venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    binds = {SRC: REPO, "/tmp": tmp}
    # ../shared beside the checkout (the NixOS evaluation kit) is ../shared inside too.
    if (REPO.parent / "shared").is_dir():
        binds["/shared"] = REPO.parent / "shared"
    try:
        proc = run_in_root(root, argv or ["/bin/bash"], binds=binds,
                           cwd=cwd.rstrip("/."), env={"PATH": path, "VIRTUAL_ENV": venv})
        return proc.returncode
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.matrix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or find cached) roots and their venvs")
    b.add_argument("suites", nargs="*", help="suites or Nix versions (default: all)")
    p = sub.add_parser("path", help="print a root's directory (building it first)")
    p.add_argument("suite")
    s = sub.add_parser("shell", help="run a command in a root (default: bash)")
    s.add_argument("suite")
    s.add_argument("argv", nargs=argparse.REMAINDER)
    t = sub.add_parser("test", help="the matrix test run (what scripts/test calls)")
    t.add_argument("--legs", default="all", help='"all", "host" (no root) or e.g. "2.8,sid"')
    t.add_argument("--host", choices=("all", "none", "rest"), default="rest",
                   help="host leg: all tests, none, or the tests without Nix (default)")
    t.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.cmd == "build":
        from .run import pick

        for leg in pick(",".join(args.suites)):
            root = ensure_root(leg)
            ensure_venv(root, CACHE)
            print(root)
        return 0
    if args.cmd == "path":
        print(ensure_root(suite(args.suite)))
        return 0
    if args.cmd == "test":
        return test(args.legs, args.host, _after_dashes(args.pytest_args))
    return shell(args.suite, _after_dashes(args.argv))


def test(legs: str, host: str, pytest_args: list[str]) -> int:
    from . import run

    suites = run.pick(legs)
    results = []
    if host != "none":
        results.append(run.run_host(pytest_args, REPO, everything=host == "all" or not suites))
    results += [run.run_leg(s, pytest_args, REPO) for s in suites]
    return run.summary(results)


def _after_dashes(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM ends the run like Ctrl-C does: through `finally`, which removes the run's /tmp.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    os.umask(0o022)
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
