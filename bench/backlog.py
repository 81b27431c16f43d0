"""A backlog that lasts: keeps the daemon draining real content for as long as a build loop
runs, so the loop is measured against uploads, not against an idle daemon.

Each time every backlog path has landed, the file:// cache loses them (their narinfos and NAR
files are deleted, as a cache's own GC would) and they are pushed again: the daemon's lookup
finds them missing and uploads them anew, compressing each NAR again. (A forced push would
not do: `nix copy` skips a path whose narinfo the cache has.) Progress is asked per backlog
path (the `progress` op), so the loop's own small outputs do not count.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from nix_push_queue.daemon.s3.staging import parse_narinfo
from nix_push_queue.nix.storepath import narinfo_name

from . import product

POLL = 0.1  # seconds between two looks at the backlog's progress


class Backlog:
    def __init__(self, socket: Path, paths: list[str], cache: Path) -> None:
        self._socket = socket
        self._paths = paths
        self._cache = cache
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backlog", daemon=True)
        self.rounds = 0  # pushes of the whole backlog
        self.busy = 0  # looks at which some backlog path was not yet uploaded
        self.looks = 0
        self.error: str | None = None

    def __enter__(self) -> Backlog:
        self._push()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def busy_fraction(self) -> float | None:
        return round(self.busy / self.looks, 2) if self.looks else None

    def _push(self) -> None:
        self._forget()
        product.request(self._socket, {"op": "enqueue", "paths": self._paths,
                                       "source": "push"})
        self.rounds += 1

    def _forget(self) -> None:
        """The cache loses the backlog: each narinfo, and the NAR file it names."""
        for path in self._paths:
            narinfo = self._cache / narinfo_name(path)
            try:
                text = narinfo.read_text("utf-8")
            except FileNotFoundError:
                continue
            (self._cache / parse_narinfo(text).url).unlink(missing_ok=True)
            narinfo.unlink()

    def _left(self) -> int:
        reply: dict[str, Any] = product.request(
            self._socket, {"op": "progress", "paths": self._paths})
        left = 0
        for target in reply.get("targets", {}).values():
            left += int(target.get("pending", 0)) + int(target.get("inflight", 0))
        return left

    def _run(self) -> None:
        try:
            while not self._stop.wait(POLL):
                self.looks += 1
                if self._left():
                    self.busy += 1
                else:
                    self._push()
        except (OSError, ValueError) as exc:  # the daemon went away: the loop says so
            self.error = str(exc)
