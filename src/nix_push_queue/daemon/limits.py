"""What clients may hold in the daemon: connections, and bytes of requests not yet complete.

Two limits, each global:
- `max_connections`: at the limit the oldest idle connection is closed for a newcomer
  (refused only when all are busy), so thousands of idle clients cannot lock hooks out;
- `budget`: bytes buffered for unfinished request lines across all connections. Each line
  is also capped at MAX_LINE, but 256 connections x 1 MiB is 256 MiB; over the budget the
  connection holding the most (the newest of equals) gets a `too_large` reply and is closed.
  Hooks send a few KiB, so the greedy clients go first.
Each client closed by a limit costs one log line (evictions: one per thousand). When a lot of
buffered memory was freed, the C heap is trimmed so the resident size falls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..wire.protocol import ErrorReply, encode

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 256
BUFFER_BUDGET = 32 << 20  # bytes of unfinished requests held for all clients together
TRIM_AFTER = 8 << 20  # freed bytes that make a heap trim worth it
TRIM_DELAY = 1.0  # seconds: one trim after a burst of closes, not one per close


@dataclass(eq=False)
class Slot:
    """One connection's share of the limits (mutable: the connection updates it)."""

    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None
    busy: bool = False  # a request is being handled
    held: int = 0  # bytes of request data buffered for it
    closed_by: str | None = None  # set when a limit (or shutdown) closed it
    discard: Callable[[], None] | None = None  # frees the connection's buffers at once


class Limits:
    def __init__(self, max_connections: int = MAX_CONNECTIONS,
                 budget: int = BUFFER_BUDGET) -> None:
        self.max_connections = max_connections
        self.budget = budget
        self.held = 0
        self.evicted = 0
        self.rejected = 0
        self._slots: dict[Slot, None] = {}  # insertion order: oldest first
        self._freed = 0
        self._trim: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._slots)

    def slots(self) -> list[Slot]:
        return list(self._slots)

    def admit(self, writer: asyncio.StreamWriter) -> Slot | None:
        """A slot for a new connection, or None when full of busy connections."""
        if len(self._slots) >= self.max_connections and not self._evict_idle():
            return None
        slot = Slot(writer, asyncio.current_task())
        self._slots[slot] = None
        return slot

    def release(self, slot: Slot) -> None:
        self.hold(slot, 0)
        self._slots.pop(slot, None)

    def hold(self, slot: Slot, nbytes: int) -> None:
        """`slot` now buffers `nbytes`; over the budget, close the greediest idle reader."""
        self.held += nbytes - slot.held
        if nbytes < slot.held:
            self._note_freed(slot.held - nbytes)
        slot.held = nbytes
        while self.held > self.budget:
            victim = self._greediest()
            if victim is None:
                return
            self._reject(victim)

    def close(self, slot: Slot, why: str) -> None:
        """Close `slot`'s connection now (its coroutine sees EOF and returns quietly)."""
        slot.closed_by = why
        self._drop(slot)
        slot.writer.transport.abort()

    def _evict_idle(self) -> bool:
        """Close the oldest idle connection; False when every connection is busy. Refusing
        instead would let a few hundred clients that connect and say nothing push every hook
        to the spool for the idle timeout."""
        for slot in self._slots:
            if not slot.busy and slot.closed_by is None:
                self.close(slot, "evicted")
                del self._slots[slot]
                self.evicted += 1
                if self.evicted % 1000 == 1:
                    log.warning("at the limit of %d connections: closed the oldest idle one "
                                "(%d so far)", self.max_connections, self.evicted)
                return True
        return False

    def _greediest(self) -> Slot | None:
        best: Slot | None = None
        for slot in reversed(self._slots):  # newest first: among equals the newest goes
            if not slot.busy and slot.closed_by is None and slot.held > 0 and (
                    best is None or slot.held > best.held):
                best = slot
        return best

    def _reject(self, slot: Slot) -> None:
        self.rejected += 1
        log.warning("closing a connection holding %d bytes of an unfinished request: clients "
                    "held %d bytes, over the budget of %d", slot.held, self.held, self.budget)
        with contextlib.suppress(Exception):  # the peer may be gone already
            slot.writer.write(encode(ErrorReply(
                "too_large", "the daemon holds too much unfinished request data; "
                "send complete lines, and fewer at once")))
        slot.closed_by = "over budget"
        self._drop(slot)
        slot.writer.close()  # after the reply is flushed

    def _drop(self, slot: Slot) -> None:
        if slot.discard is not None:
            slot.discard()
        self.hold(slot, 0)

    def _note_freed(self, nbytes: int) -> None:
        self._freed += nbytes
        if self._freed < TRIM_AFTER or self._trim is not None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule on
            self._trim = asyncio.get_running_loop().call_later(TRIM_DELAY, self._trim_now)

    def _trim_now(self) -> None:
        self._trim, self._freed = None, 0
        trim_heap()


def trim_heap() -> bool:
    """Give free C heap pages back to the system (glibc's malloc_trim). Buffers of a few
    hundred KiB are carved from the heap, and glibc returns only its top on its own, so a
    burst of large requests would otherwise keep the daemon's resident size up for good."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):  # not glibc
        return False
