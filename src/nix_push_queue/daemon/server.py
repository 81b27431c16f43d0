"""The daemon's unix socket server: speaks protocol.py, one request then one reply per line.

An `enqueue` is answered only after its rows are committed, so an `ok` is durable. Anything
a peer sends that is malformed or too large gets an error reply and a log line, and the
daemon keeps serving. A connection that stays idle past `idle_timeout` is closed; at
`max_connections` the oldest idle connection makes room for a new one (refused only when all
are busy), so thousands of idle clients cannot exhaust it.

The listening socket comes from listen.py (socket activation or bound by the daemon).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from ..wire.protocol import MAX_LINE, ErrorReply, Reply, encode
from .dispatch import Dispatcher, DispatchMetrics, Offload
from .intake import Intake

__all__ = ["Intake", "Server"]

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 30.0  # seconds a connection may wait between requests
MAX_CONNECTIONS = 256
WRITE_TIMEOUT = 10.0  # a peer that does not read its reply is dropped
CLOSE_GRACE = 5.0  # on shutdown, how long requests being handled may take to finish


class Server:
    def __init__(self, intake: Intake, *, notify: Callable[[], None],
                 metrics: DispatchMetrics | None = None, idle_timeout: float = IDLE_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS,
                 offload: Offload = asyncio.to_thread) -> None:
        self.dispatcher = Dispatcher(intake, notify=notify, metrics=metrics, offload=offload)
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._server: asyncio.AbstractServer | None = None
        self._connections: dict[asyncio.Task[Any], bool] = {}  # task -> handling a request
        self._closing = False
        self._evicted = 0

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self, sock: socket.socket) -> None:
        """Serve on an already listening unix stream socket."""
        sock.setblocking(False)
        # asyncio listens again with its own backlog (100 by default): keep the kernel's
        # maximum, or a burst of clients gets EAGAIN at connect and spools.
        self._server = await asyncio.start_unix_server(self._connection, sock=sock,
                                                       limit=MAX_LINE,
                                                       backlog=socket.SOMAXCONN)

    async def close(self) -> None:
        """Stop accepting; drop idle connections; let requests being handled finish."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task, busy in list(self._connections.items()):
            if not busy:
                task.cancel()
        tasks = list(self._connections)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=CLOSE_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        full = len(self._connections) >= self._max_connections
        if task is None or self._closing or (full and not self._evict_idle()):
            log.warning("refusing a connection: %d open (max %d), all busy",
                        len(self._connections), self._max_connections)
            with contextlib.suppress(Exception):
                await self._send(writer, ErrorReply("internal", "too many connections"))
            await _close(writer)
            return
        self._connections[task] = False
        try:
            await self._serve(task, reader, writer)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("connection ended: %s", exc)
        finally:
            self._connections.pop(task, None)
            await _close(writer)

    def _evict_idle(self) -> bool:
        """Close the oldest idle connection to make room for a new one; False when every
        connection is busy. Refusing instead would let a few hundred clients that connect
        and say nothing push every hook to the spool for `idle_timeout`."""
        for task, busy in self._connections.items():
            if not busy:
                task.cancel()
                del self._connections[task]
                self._evicted += 1
                if self._evicted % 1000 == 1:
                    log.warning("at the limit of %d connections: closed the oldest idle one "
                                "(%d so far)", self._max_connections, self._evicted)
                return True
        return False

    async def _serve(self, task: asyncio.Task[Any], reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        while not self._closing:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), self._idle_timeout)
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    log.warning("request without its newline (%d bytes); ignored",
                                len(exc.partial))
                return
            except asyncio.LimitOverrunError:
                log.warning("request larger than %d bytes; closing the connection", MAX_LINE)
                await self._send(writer, ErrorReply(
                    "too_large", f"a request line may hold at most {MAX_LINE} bytes"))
                return
            except TimeoutError:
                log.debug("closing a connection idle for %.0f s", self._idle_timeout)
                return
            self._connections[task] = True
            try:
                reply = await self.dispatcher.handle_line(line)
                await self._send(writer, reply)
            finally:
                self._connections[task] = False

    async def _send(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        writer.write(encode(reply))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT)
