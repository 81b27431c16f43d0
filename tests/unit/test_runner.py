"""runner.run's children die with the process that started them, even by SIGKILL (real
processes: a parent interpreter running runner.run, killed with -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nix_push_queue.nix import priority, runner

PARENT = """
import asyncio, os, sys
from nix_push_queue.nix import runner
async def main():
    task = asyncio.create_task(runner.run(["sleep", "300"], env=os.environ, timeout=300))
    await asyncio.sleep(0.5)
    print("started", flush=True)
    await task
asyncio.run(main())
"""


def _children_named(ppid_chain_root: int, name: str) -> list[int]:
    """Processes called `name` whose session leader descends from nothing alive: found by
    their command line and the marker environment variable."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if cmd[:1] == [name.encode()] and f"NPQ_RUNNER_TEST={ppid_chain_root}".encode() in env:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_children_die_with_a_sigkilled_parent() -> None:
    marker = str(os.getpid())
    env = {**os.environ, "NPQ_RUNNER_TEST": marker}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "started"
        children = _children_named(int(marker), "sleep")
        assert len(children) == 1, children
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _children_named(int(marker), "sleep") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _children_named(int(marker), "sleep") == [], "the child outlived its parent"
    finally:
        parent.kill()
        for pid in _children_named(int(marker), "sleep"):
            os.kill(pid, signal.SIGKILL)


def test_missing_program_raises_like_exec() -> None:
    with pytest.raises(FileNotFoundError):
        runner.dying_with_us(["no-such-program-npq"], {"PATH": "/nonexistent"})


def test_wrapped_command_keeps_output_and_status() -> None:
    import asyncio

    result = asyncio.run(runner.run(["sh", "-c", "echo out; echo err >&2; exit 3"],
                                    env=os.environ, timeout=30))
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")


# The child reports its own nice value and IO priority: ioprio_get(IOPRIO_WHO_PROCESS, 0) by
# its syscall number (ioprio_set's + 1 on every table), since a build sandbox has no ionice.
PRIORITY_PROBE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
try:
    group = (open("/proc/self/autogroup").read().split("nice")[1:] or ["-1"])[0].strip()
except OSError:
    group = "-1"
print(os.getpriority(os.PRIO_PROCESS, 0), libc.syscall(int(sys.argv[1]) + 1, 1, 0), group)
"""


def own_group_nice() -> int | None:
    """The nice value of this process's autogroup, or None where it has none: the kernel has no
    autogroups, or prints nothing for a task in the root group (a CI runner's process tree)."""
    try:
        fields = Path("/proc/self/autogroup").read_text().split("nice")
    except OSError:
        return None
    return int(fields[1]) if len(fields) == 2 else None


@pytest.mark.skipif(priority.ioprio_syscall() is None, reason="ioprio_set unknown here")
def test_children_run_at_low_cpu_and_io_priority() -> None:
    """The daemon's `nix` children yield to builds without systemd too (nix/priority.py):
    the kernel's own view of the child."""
    import asyncio

    argv = [sys.executable, "-c", PRIORITY_PROBE, str(priority.ioprio_syscall())]
    result = asyncio.run(runner.run(argv, env=os.environ, timeout=30))
    assert result.ok, result.stderr
    nice, ioprio, group = (int(v) for v in result.stdout.split())
    assert nice == priority.NICE == 19
    assert ioprio >> priority.IOPRIO_CLASS_SHIFT == priority.IOPRIO_CLASS_IDLE
    # Its session's autogroup, where it has one, is left as it is (nix/priority.py: a lowered
    # group starves); -1 is a child with no autogroup of its own.
    assert group in (0, -1)
    assert result.stderr == ""
    assert os.getpriority(os.PRIO_PROCESS, 0) < 19  # the daemon itself is left as it is
    own = own_group_nice()
    assert own is None or own < 19


CPUS_PROBE = "import os; print(','.join(map(str, sorted(os.sched_getaffinity(0)))))"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_children_run_on_the_cpus_the_share_gives() -> None:
    """While builds run, a child starts on the CPUs left to uploads; with no build in sight,
    on every CPU (the kernel's own view of the child)."""
    import asyncio

    allowed = os.sched_getaffinity(0)
    clock = [0.0]
    share = priority.CpuShare(1, allowed, busy_for=30, now=lambda: clock[0])
    runner.share_cpus(share)
    try:
        def child_cpus() -> str:
            result = asyncio.run(runner.run([sys.executable, "-c", CPUS_PROBE],
                                            env=os.environ, timeout=30))
            assert result.ok, result.stderr
            return result.stdout.strip()

        every = ",".join(map(str, sorted(allowed)))
        assert child_cpus() == every
        share.build_seen()
        assert child_cpus() == ",".join(map(str, sorted(allowed)[1:]))
        clock[0] = 31.0  # no build for longer than busy_for
        assert child_cpus() == every
    finally:
        runner.share_cpus(None)
    assert os.sched_getaffinity(0) == allowed  # the daemon itself is left as it is


def test_running_children_move_when_builds_start() -> None:
    clock = [100.0]
    moved: list[tuple[int, set[int]]] = []
    share = priority.CpuShare(1, {0, 1, 2}, busy_for=30, now=lambda: clock[0],
                              pin=lambda pid, cpus: moved.append((pid, cpus)))
    share.started(11)
    share.started(12)
    share.ended(12)
    share.build_seen()
    assert moved == [(11, {1, 2})] and share.build_gap() == float("inf")  # a lone build
    clock[0] = 110.0
    share.build_seen()  # already busy: nothing moves again
    assert moved == [(11, {1, 2})] and share.cpus() == {1, 2}
    assert share.build_gap() == 10.0  # the builds at 100 and 110 s
    clock[0] = 140.0  # 30 s after the last build: idle, every CPU again
    assert share.cpus() == {0, 1, 2} and not share.busy()
    share.build_seen()
    assert moved == [(11, {1, 2})] * 2


def test_nothing_reserved_moves_nothing() -> None:
    moved: list[int] = []
    for reserved, allowed in ((0, {0, 1}), (1, {0}), (2, {0, 1})):
        share = priority.CpuShare(reserved, allowed, pin=lambda pid, _c: moved.append(pid))
        share.started(1)
        assert not share.busy()
        share.build_seen()
        assert share.cpus() is None
        assert share.busy()  # builds run all the same (queue.build_batch_wait asks)
    assert moved == []


def test_pin_process_moves_every_thread() -> None:
    """The real thing, on a child with two threads: both end on the CPU given."""
    cpu = min(os.sched_getaffinity(0))
    code = ("import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); "
            "print('up', flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        priority.pin_process(child.pid, {cpu})
        tids = os.listdir(f"/proc/{child.pid}/task")
        assert len(tids) == 2
        assert all(os.sched_getaffinity(int(t)) == {cpu} for t in tids)
    finally:
        child.kill()
        child.wait()
    priority.pin_process(child.pid, {cpu})  # gone: no error


def test_upload_cpus() -> None:
    assert priority.upload_cpus({0, 1, 2, 3}, 1) == {1, 2, 3}
    assert priority.upload_cpus({2, 5, 7}, 2) == {7}
    assert priority.upload_cpus({0, 1}, 2) is None
    assert priority.upload_cpus({0, 1}, 0) is None
    assert priority.upload_cpus({3}, 1) is None
