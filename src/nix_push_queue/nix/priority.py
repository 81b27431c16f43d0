"""How low the daemon's uploads run, so that a build never waits for one.

One set of values for both places that apply them: the generated systemd unit (and so the
NixOS module, which installs that unit) and, for a daemon started without systemd, the
wrapper that starts each `nix` child (nix/runner.py), which lowers the child before it execs.

Why these: nice 19 still gives an upload about 1.5 % of a core that builds keep busy, so a
builder that never idles still drains its queue; SCHED_IDLE (`CPUSchedulingPolicy=idle`)
would starve it for as long as builds run. Builds run in nix-daemon.service's cgroup, and
between cgroups the kernel weighs CPUWeight, not nice: weight 1 against the default 100.
IO: the idle class. A build loop beside a CPU-bound `nix copy` (zstd -19) at nice 0, nice
19 + idle IO and SCHED_IDLE + idle IO was measured on this shared 2-core machine, but with
a load average of 7-12 from other jobs the three could not be told apart (p50 315, 373,
527 ms per build, rising with the load); bench/buildloop.py's "draining" cell measures the
daemon as shipped.

Without systemd, nice means less than it seems: each `nix` child has a session of its own,
and where the kernel groups tasks by session (autogroup, on in Debian's and Ubuntu's kernels)
it shares the CPU between groups before nice counts, so a nice-19 `nix copy` weighs as much
as the build loop's whole session. Lowering each child's group, and the daemon itself, was
tried: a build while the daemon drained went from 151 to 100 ms p50 (59 ms with no hook,
bench/defaults.py, Nix 2.8), but a 2-path drain beside one nice-0 CPU hog per CPU then took
98 s instead of under one (a lowered group gets about 1.5 % of a CPU): a builder that never
idles would never drain. So the groups are left alone, and what keeps builds fast is the
CPUs:

With every CPU busy, even SCHED_IDLE work slows each short process a build step starts (a
hook of sh and three coreutils: 6.5 ms alone, 15-22 ms beside two nice-19 or SCHED_IDLE
compressors, 8-10 ms beside one; measured by hand, 150 runs each). So the daemon leaves
`queue.reserved_cpus` CPUs (default 1) to builds while they run: a `nix` child started within
BUSY_FOR seconds of a build's hook entry runs on the other CPUs, and the children already
running are moved there when builds start (CpuShare). With no build in sight, a drain has
every CPU. The daemon's own threads (intake, SQLite, the boto3 uploads) stay on the other
CPUs always: measured, they alone cost a build loop 20 ms p50 more. The daemon itself keeps
its priority (the unit's Nice= applies under systemd): lowered as well, beside nice-0 work on
its CPUs it answered neither the spool nor `wait` for a minute.
"""

from __future__ import annotations

import contextlib
import os
import platform
import threading
import time
from collections.abc import Callable

NICE = 19
BUSY_FOR = 30.0  # seconds after a build's hook entry during which builds count as running
# ioprio_set(2): class in bits 13-15; 3 is IOPRIO_CLASS_IDLE (disk time only when no one
# else wants it). IOPRIO_WHO_PROCESS = 1.
IOPRIO_CLASS_IDLE = 3
IOPRIO_CLASS_SHIFT = 13
IOPRIO_WHO_PROCESS = 1
# ioprio_set's number: the generic table (aarch64, riscv64) and x86_64's own.
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "riscv64": 30, "i686": 289}

# What the systemd unit says (generate/templates/nix-push-queue.service.j2).
UNIT_SETTINGS: tuple[tuple[str, str], ...] = (
    ("Nice", str(NICE)),
    # Builds run in nix-daemon.service's cgroup: between cgroups the weight counts, not nice.
    ("CPUWeight", "1"),
    ("IOSchedulingClass", "idle"),
)


def ioprio_syscall() -> int | None:
    """ioprio_set's syscall number on this machine; None where it is not known."""
    return _IOPRIO_SET.get(platform.machine())


def ioprio_idle() -> int:
    return IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT


def upload_cpus(allowed: set[int], reserved: int) -> set[int] | None:
    """The CPUs uploads may use: `allowed` less its `reserved` lowest-numbered ones; None
    (leave as it is) when nothing is reserved or nothing would be left."""
    if reserved <= 0 or len(allowed) <= reserved:
        return None
    return set(sorted(allowed)[reserved:])


Pin = Callable[[int, set[int]], None]


def pin_process(pid: int, cpus: set[int]) -> None:
    """Move every thread of `pid` to `cpus` (affinity is per thread); a process that has
    just exited is no error."""
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)


class CpuShare:
    """Which CPUs the daemon's `nix` children may use: all of them, or, while builds run
    (a build's hook entry came in the last BUSY_FOR seconds), all but `reserved`.
    Thread-safe: entries arrive on the server's and the spool's threads."""

    def __init__(self, reserved: int, allowed: set[int], *, busy_for: float = BUSY_FOR,
                 now: Callable[[], float] = time.monotonic, pin: Pin = pin_process) -> None:
        self.every = set(allowed)
        self.narrow = upload_cpus(allowed, reserved)
        self._busy_for, self._now, self._pin = busy_for, now, pin
        self._busy_until = float("-inf")
        self._last_build = float("-inf")
        self._gap = float("inf")  # seconds between the last two builds seen
        self._live: set[int] = set()
        self._lock = threading.Lock()

    def cpus(self) -> set[int] | None:
        """The CPUs for a child started now; None: nothing is reserved, leave them. (Given
        even when they are all: the daemon itself runs on the narrow set, see main.py.)"""
        if self.narrow is None:
            return None
        with self._lock:
            return self.narrow if self._now() < self._busy_until else self.every

    def build_seen(self) -> None:
        """A build's outputs came in: builds are running. The children started before, on
        every CPU, move to the narrow set."""
        with self._lock:
            now = self._now()
            idle = now >= self._busy_until
            self._busy_until = now + self._busy_for
            self._gap, self._last_build = now - self._last_build, now
            live = sorted(self._live) if idle else []
        if self.narrow is None:
            return  # nothing reserved: busy() still says builds run
        for pid in live:
            self._pin(pid, self.narrow)

    def busy(self) -> bool:
        """Whether builds run (a build's hook entry in the last BUSY_FOR seconds), whether or
        not CPUs are reserved for them."""
        with self._lock:
            return self._now() < self._busy_until

    def build_gap(self) -> float:
        """Seconds between the last two builds seen (infinite before the second): a lone
        build's outputs need not wait for builds that are not coming."""
        with self._lock:
            return self._gap

    def started(self, pid: int) -> None:
        with self._lock:
            self._live.add(pid)

    def ended(self, pid: int) -> None:
        with self._lock:
            self._live.discard(pid)
