"""The stop watchdog (daemon/stopwatch.py): fires once its time is up unless cancelled; the
default action is tested in a child process, since it ends the process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from nix_push_queue.daemon.stopwatch import EXIT_STUCK, StopWatchdog


def test_fires_when_the_stop_outlasts_its_time() -> None:
    fired = threading.Event()
    seen: list[float] = []

    def on_stuck(seconds: float) -> None:
        seen.append(seconds)
        fired.set()

    dog = StopWatchdog(0.05, on_stuck)
    dog.start()
    assert fired.wait(5)
    assert seen == [0.05]


def test_cancelled_in_time_it_does_nothing() -> None:
    fired = threading.Event()
    dog = StopWatchdog(0.2, lambda s: fired.set())
    dog.start()
    dog.cancel()
    time.sleep(0.4)
    assert not fired.is_set()


CHILD = """
import threading, time
from nix_push_queue.daemon.stopwatch import StopWatchdog, enable_stack_dumps
enable_stack_dumps()
def stuck_worker():
    time.sleep(60)
threading.Thread(target=stuck_worker, name="stuck").start()
StopWatchdog(0.3).start()
time.sleep(60)
"""


def test_a_stuck_stop_dumps_every_stack_and_exits() -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == EXIT_STUCK, proc.stderr
    assert time.monotonic() - started < 20
    assert "stuck_worker" in proc.stderr  # the stuck thread's stack
    assert "Thread" in proc.stderr and "most recent call first" in proc.stderr


def test_sigusr1_dumps_the_stacks_of_a_running_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD.replace("0.3", "30")],
                             stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        os.kill(child.pid, signal.SIGUSR1)
        time.sleep(0.5)
        assert child.poll() is None  # still running
    finally:
        child.kill()
        _, err = child.communicate(timeout=10)
    assert "stuck_worker" in err
