"""One client connection: request lines in, replies out, in order.

Every byte buffered for the client is reported to the Limits as it arrives (CountingReader
sees it before any coroutine runs), so the Limits can close connections before clients
together hold more than the budget. A line must
arrive whole within `idle_timeout` of the previous reply, and hold at most MAX_LINE bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sized
from typing import SupportsIndex

from ..wire.protocol import MAX_LINE, ErrorReply, Reply, encode
from .dispatch import Dispatcher
from .limits import Limits, Slot

log = logging.getLogger(__name__)

CHUNK = 1 << 16  # bytes taken from the stream at a time
WRITE_TIMEOUT = 10.0  # a peer that does not read its reply is dropped


class CountingReader(asyncio.StreamReader):
    """A StreamReader that knows how many bytes it holds, and says so on each arrival."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit=limit)
        self.buffered = 0
        self.on_feed: Callable[[], None] | None = None
        self._discarding = False

    def discard(self) -> None:
        """Drop what is buffered and whatever arrives later (the connection is closing)."""
        self._discarding = True
        buffer = getattr(self, "_buffer", None)  # StreamReader's own, CPython 3.8 to 3.13
        if isinstance(buffer, bytearray):
            buffer.clear()
        self.buffered = 0

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        if self._discarding:
            return
        super().feed_data(data)
        self.buffered += len(data) if isinstance(data, Sized) else 0
        if self.on_feed is not None:
            self.on_feed()

    async def read(self, n: int = -1) -> bytes:
        data = await super().read(n)
        self.buffered -= len(data)
        return data


class Connection:
    def __init__(self, reader: CountingReader, writer: asyncio.StreamWriter,
                 slot: Slot, *, limits: Limits, dispatcher: Dispatcher,
                 idle_timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self._slot = slot
        self._limits = limits
        self._dispatcher = dispatcher
        self._idle_timeout = idle_timeout
        self._rest = b""  # bytes after the last line taken (pipelined requests)
        self._chunks: list[bytes] = []  # of the line being read
        self._line = 0  # bytes of the line being read or handled
        reader.on_feed = self._report
        slot.discard = self._discard

    async def serve(self, closing: Callable[[], bool]) -> None:
        while not closing():
            line = await self._next_line()
            if line is None:
                return
            self._slot.busy = True
            try:
                reply = await self._dispatcher.handle_line(line)
                await self.send(reply)
            finally:
                self._slot.busy = False
                del line
                self._line = 0
                self._report()

    def _report(self) -> None:
        if self._slot.closed_by is None:
            self._limits.hold(self._slot, self._line + len(self._rest) + self._reader.buffered)

    def detach(self) -> None:
        """Break the reader -> connection -> reader cycle, so the buffers go as soon as the
        connection ends instead of at the next cyclic garbage collection."""
        self._reader.on_feed = None
        self._slot.discard = None
        self._discard()

    def _discard(self) -> None:
        """Free the buffers now: a limit closed the connection, or it ended."""
        self._chunks.clear()
        self._rest = b""
        self._reader.discard()

    async def send(self, reply: Reply) -> None:
        self._writer.write(encode(reply))
        await asyncio.wait_for(self._writer.drain(), WRITE_TIMEOUT)

    async def _next_line(self) -> bytes | None:
        """The next whole line, or None when the connection is to end (EOF, idle, too large,
        closed by a limit)."""
        deadline = time.monotonic() + self._idle_timeout
        chunks = self._chunks
        chunks.clear()
        size = self._line = 0
        data: bytes | None = self._rest
        self._rest = b""
        while True:
            if data:
                end = data.find(b"\n") + 1
                if size + (end or len(data)) > MAX_LINE:
                    await self._too_large()
                    return None
                if end:
                    chunks.append(data[:end])
                    self._rest = data[end:]
                    line = b"".join(chunks)
                    chunks.clear()
                    self._line = len(line)
                    self._report()
                    return line
                chunks.append(data)
                size = self._line = size + len(data)
                self._report()
            if self._slot.closed_by is not None:
                return None
            data = await self._read(deadline)
            if data is None or self._slot.closed_by is not None:
                return None
            if not data:
                if size and b"".join(chunks).strip():
                    log.warning("request without its newline (%d bytes); ignored", size)
                return None

    async def _read(self, deadline: float) -> bytes | None:
        """Up to CHUNK bytes (b"" at EOF), or None when the deadline passed."""
        try:
            return await asyncio.wait_for(self._reader.read(CHUNK),
                                          max(deadline - time.monotonic(), 0))
        except TimeoutError:
            log.debug("closing a connection idle for %.0f s", self._idle_timeout)
            return None

    async def _too_large(self) -> None:
        log.warning("request larger than %d bytes; closing the connection", MAX_LINE)
        self._line = 0
        self._report()
        await self.send(ErrorReply("too_large",
                                   f"a request line may hold at most {MAX_LINE} bytes"))
