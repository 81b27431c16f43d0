"""Supervision of the daemon's long-running tasks: a worker loop or a periodic task that
raises unexpectedly is logged with its traceback, counted, and started again after a backoff.

Before, such a task simply ended: one failed database read in a target's loop stopped that
target's uploads until a restart, `status` kept answering, and the exception surfaced only
(swallowed) at stop (issue 22). A task that returns on its own has finished its job (the
status loop without $NOTIFY_SOCKET) and is not restarted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger(__name__)

RESTART_MIN = 1.0  # seconds before the first restart; doubled per crash in a row
RESTART_MAX = 60.0  # the longest wait; a task that ran this long starts over at RESTART_MIN


class CrashMetrics(Protocol):
    def task_crashed(self, task: str) -> None: ...


Sleep = Callable[[float], Awaitable[None]]


async def supervise(name: str, run: Callable[[], Awaitable[None]],
                    metrics: CrashMetrics | None = None, *, sleep: Sleep = asyncio.sleep,
                    monotonic: Callable[[], float] = time.monotonic) -> None:
    """Run `run()` until it returns or this task is cancelled, restarting it after each
    unexpected exception (RESTART_MIN, doubling, at most RESTART_MAX)."""
    delay = RESTART_MIN
    while True:
        started = monotonic()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            if monotonic() - started > RESTART_MAX:
                delay = RESTART_MIN  # it had been running well: not a crash loop
            log.exception("task %s failed unexpectedly; restarting it in %.0f s", name, delay)
            if metrics is not None:
                metrics.task_crashed(name)
        await sleep(delay)
        delay = min(RESTART_MAX, delay * 2)


def start(name: str, run: Callable[[], Awaitable[None]],
          metrics: CrashMetrics | None = None, *, sleep: Sleep = asyncio.sleep
          ) -> asyncio.Task[None]:
    """A supervised task named `name`."""
    return asyncio.create_task(supervise(name, run, metrics, sleep=sleep), name=name)
