"""A stop that never hangs, and stacks on demand.

systemd gives a stopping daemon `TimeoutStopSec` and then kills it with SIGKILL, which tells
no one why the stop hung. A thread the event loop waits for at exit (a `to_thread` call that
does not return) would hold the daemon that long, or for ever without systemd. So once the
stop has begun, a watchdog allows the uploads' grace and `SLACK` seconds more; past that it
logs, dumps every thread's stack to stderr (the journal) and exits at once. Nothing is lost:
rows still in flight go back to pending at the next start (store.recover), as after kill -9.

SIGUSR1 dumps the stacks of a running daemon without stopping it (`kill -USR1 PID`).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

SLACK = 30.0  # seconds past the grace: two kill graces of a `nix` child, and margin
EXIT_STUCK = 70  # EX_SOFTWARE: the stop itself failed (the CLI's codes are for commands)


def enable_stack_dumps() -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def _stuck(seconds: float) -> None:
    log.error("stopping has taken over %.0f s; dumping every thread's stack and exiting "
              "now (the next start puts unfinished rows back to pending)", seconds)
    faulthandler.dump_traceback(all_threads=True)
    os._exit(EXIT_STUCK)


class StopWatchdog:
    def __init__(self, seconds: float, on_stuck: Callable[[float], None] = _stuck) -> None:
        self._timer = threading.Timer(seconds, on_stuck, args=(seconds,))
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()
