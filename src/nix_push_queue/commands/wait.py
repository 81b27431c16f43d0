"""`nix-push-queue wait [--paths PATH...] [--timeout S]`: a barrier for CI jobs.

Plain: block until nothing is pending or uploading and the spool is ingested; exit 0 when
drained, WaitTimeout on timeout, DeadLetters/PathsLost when it drained with some left.
With --paths: block until exactly those paths are on every target (as `push --wait` does),
whatever else the queue holds. Progress goes to stderr: a live line per target on a terminal,
a plain line every few seconds otherwise, and a summary at the end.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ._common import add_endpoint_args, connect
from ._types import seconds

if TYPE_CHECKING:
    from ..client.control import ControlClient


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--paths", nargs="+", default=None, metavar="PATH",
                        help="wait for these store paths (or ./result links) only, not the "
                             "whole queue; they must be queued already (hook or push)")
    parser.add_argument("--timeout", type=seconds, default=None, metavar="SECONDS",
                        help="give up after this long (default: wait forever)")
    add_endpoint_args(parser)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from ..client.control import wait_drained
    from ..client.progressview import QueueTracker, open_view
    from ..client.pushpaths import named_paths

    client, ep = connect(args)
    if args.paths is not None:
        wait_for_paths(client, named_paths(args.paths, ep.store_dir), args.timeout, "wait",
                       env)
        return 0
    view = open_view(sys.stderr, "wait", env)
    tracker = QueueTracker()
    try:
        stats = wait_drained(client, timeout=args.timeout, spool_dir=ep.spool_dir,
                             on_poll=lambda s: view.update(tracker.snapshots(s)))
    finally:
        view.close()
    done = sum(s.done for s in stats.values())
    print(f"queue empty ({done} path(s) uploaded over the queue's lifetime)")
    return 0


def wait_for_paths(client: ControlClient, paths: Sequence[str], timeout: float | None,
                   label: str, env: Mapping[str, str]) -> None:
    """Wait for `paths` with a progress view on stderr; print the outcome on stdout."""
    from ..client.progressview import from_paths, open_view
    from ..client.waitpaths import wait_paths

    view = open_view(sys.stderr, label, env)
    try:
        reply = wait_paths(client, paths, timeout=timeout, on_poll=lambda r: view.update(
            [from_paths(name, p) for name, p in sorted(r.targets.items())]))
    finally:
        view.close()
    names = ", ".join(sorted(reply.targets)) or "no target"
    # The same paths are excluded for every target (the filters are the daemon's).
    excluded = max((p.excluded for p in reply.targets.values()), default=0)
    note = f"; {excluded} of them excluded by filters.exclude" if excluded else ""
    print(f"{len(set(paths))} path(s) on every target ({names}){note}")
