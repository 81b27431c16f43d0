"""The daemon's unix socket server: speaks protocol.py, one request then one reply per line.

An `enqueue` is answered only after its rows are committed, so an `ok` is durable. Anything
a peer sends that is malformed or too large gets an error reply and a log line, and the
daemon keeps serving. A connection that stays idle past `idle_timeout` is closed. What all
clients together may hold (connections, buffered bytes) is bounded by limits.py; requests
are answered by dispatch.py; connection.py reads and writes one client.

Connections are ended by closing their transport, never by cancelling their task: asyncio's
stream server logs a cancelled handler as an error with a traceback.

The listening socket comes from listen.py (socket activation or bound by the daemon).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable

from ..wire.protocol import ErrorReply, SpoolStats, encode
from .connection import CHUNK, WRITE_TIMEOUT, Connection, CountingReader
from .dispatch import Dispatcher, DispatchMetrics, Offload
from .intake import Intake
from .limits import BUFFER_BUDGET, MAX_CONNECTIONS, Limits

__all__ = ["Intake", "Server"]

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 30.0  # seconds a connection may wait between requests
CLOSE_GRACE = 5.0  # on shutdown, how long requests being handled may take to finish


class Server:
    def __init__(self, intake: Intake, *, notify: Callable[[], None],
                 metrics: DispatchMetrics | None = None, idle_timeout: float = IDLE_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS, buffer_budget: int = BUFFER_BUDGET,
                 spool_stats: Callable[[], SpoolStats] | None = None,
                 trust: Callable[[], tuple[str, ...] | None] | None = None,
                 offload: Offload = asyncio.to_thread) -> None:
        self.dispatcher = Dispatcher(intake, notify=notify, metrics=metrics,
                                     spool_stats=spool_stats, trust=trust, offload=offload)
        self.limits = Limits(max_connections, buffer_budget)
        self._idle_timeout = idle_timeout
        self._server: asyncio.AbstractServer | None = None
        self._closing = False

    @property
    def connections(self) -> int:
        return len(self.limits)

    async def start(self, sock: socket.socket) -> None:
        """Serve on an already listening unix stream socket."""
        sock.setblocking(False)
        # asyncio listens again with its own backlog (100 by default): keep the kernel's
        # maximum, or a burst of clients gets EAGAIN at connect and spools. `limit`: what
        # the stream buffers before it stops reading a client we are not reading from. As
        # asyncio.start_unix_server, with a reader that counts what it holds.
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            return asyncio.StreamReaderProtocol(CountingReader(CHUNK), self._connection)

        # The socket file is not the server's to remove: systemd owns an inherited one, and
        # the daemon unlinks its own (listen.unlink_socket, once uploads have stopped).
        # Python 3.13+ would otherwise unlink either when the server closes.
        if sys.version_info >= (3, 13):
            self._server = await loop.create_unix_server(
                protocol, sock=sock, backlog=socket.SOMAXCONN, cleanup_socket=False)
        else:
            self._server = await loop.create_unix_server(protocol, sock=sock,
                                                         backlog=socket.SOMAXCONN)

    async def close(self) -> None:
        """Stop accepting; drop idle connections; let requests being handled finish."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        slots = self.limits.slots()
        for slot in slots:
            if not slot.busy:
                self.limits.close(slot, "shutdown")
        tasks = [slot.task for slot in slots if slot.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=CLOSE_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        if not isinstance(reader, CountingReader):
            raise TypeError("the server's protocol factory makes CountingReaders")
        slot = None if self._closing else self.limits.admit(writer)
        if slot is None:
            log.warning("refusing a connection: %d open (max %d), all busy",
                        len(self.limits), self.limits.max_connections)
            with contextlib.suppress(Exception):
                writer.write(encode(ErrorReply("internal", "too many connections")))
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
            await _close(writer)
            return
        conn = Connection(reader, writer, slot, limits=self.limits,
                          dispatcher=self.dispatcher, idle_timeout=self._idle_timeout)
        try:
            await conn.serve(lambda: self._closing)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("connection ended: %s", exc)
        except asyncio.CancelledError:
            # Only close() cancels, for a request that outlived the grace: end quietly.
            log.info("shutdown: abandoned a request still being handled")
        finally:
            conn.detach()
            self.limits.release(slot)
            await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT)
