"""Socket abuse against the real daemon: many clients that send much and never finish a
line, or connect and say nothing. Measures the daemon's resident memory from /proc.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .wire import connect


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of `pid`, KiB (VmRSS, VmHWM)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


@dataclass(frozen=True)
class Flood:
    clients: int
    sent: int  # bytes the daemon accepted from all clients together
    closed_by_daemon: int  # clients the daemon closed or answered before all was sent


def _flood_one(sock: socket.socket, size: int, block: int, fill: bytes
               ) -> tuple[int, bool]:
    sent = 0
    payload = (fill * (block // len(fill) + 1))[:block]
    try:
        while sent < size:
            sent += sock.send(payload[: min(block, size - sent)])
    except OSError:
        return sent, True
    return sent, False


@contextlib.contextmanager
def flood(sock_path: Path, clients: int, size: int, block: int = 1 << 16,
          timeout: float = 60, fill: bytes = b"a") -> Iterator[Flood]:
    """`clients` connections each send `size` bytes of `fill` repeated (no newline in it),
    in parallel, then stay open for the body of the `with`; closed afterwards."""
    socks = [connect(sock_path, timeout=timeout) for _ in range(clients)]
    results: list[tuple[int, bool]] = [(0, False)] * clients

    def run(i: int) -> None:
        results[i] = _flood_one(socks[i], size, block, fill)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
        yield Flood(clients, sum(r[0] for r in results), sum(1 for r in results if r[1]))
    finally:
        for s in socks:
            s.close()


def settle(pid: int, *, below_kib: int, timeout: float) -> int:
    """Wait until RSS drops below `below_kib` or `timeout` passes; returns the last RSS."""
    deadline = time.monotonic() + timeout
    while True:
        rss, _ = rss_kib(pid)
        if rss < below_kib or time.monotonic() > deadline:
            return rss
        time.sleep(0.5)
