"""A TCP proxy that delays every chunk by a fixed one-way latency in each direction.

`tc netem` is missing from this kernel, so latency is made in user space: each chunk read on
one side is written to the other side `delay` seconds later, in order, without limiting
throughput (chunks in flight overlap, as packets on a long link do). The TCP handshake's
round trip is modelled by holding the first client bytes until 3 one-way delays after accept.
Bandwidth is limited separately with `tc tbf` on the veth underneath.

Run as `python -m bench.delayproxy --listen 127.0.0.1:0 --upstream HOST:PORT --delay 0.1`; it
prints `LISTENING <port>` on stdout once bound, and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Sequence

CHUNK = 64 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                not_before: float) -> None:
    """Copy reader to writer, each chunk `delay` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(CHUNK)
            queue.put_nowait((max(loop.time() + delay, not_before), data))
            if not data:
                break
        await sender
    except (OSError, asyncio.IncompleteReadError):
        sender.cancel()
    finally:
        if not sender.done():
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender


async def _handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                  upstream: tuple[str, int], delay: float) -> None:
    loop = asyncio.get_running_loop()
    accepted = loop.time()
    try:
        server_r, server_w = await asyncio.open_connection(*upstream)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(
            _pump(client_r, server_w, delay, accepted + 3 * delay),
            _pump(server_r, client_w, delay, accepted + 4 * delay),
        )
    finally:
        for w in (client_w, server_w):
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()


async def start(listen: tuple[str, int], upstream: tuple[str, int],
                delay: float) -> asyncio.Server:
    """The proxy, listening (port 0: a free one, see `server.sockets[0].getsockname()`)."""
    return await asyncio.start_server(
        lambda r, w: _handle(r, w, upstream, delay), listen[0], listen[1])


async def serve(listen: tuple[str, int], upstream: tuple[str, int], delay: float) -> None:
    server = await start(listen, upstream, delay)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.delayproxy")
    parser.add_argument("--listen", type=_hostport, required=True)
    parser.add_argument("--upstream", type=_hostport, required=True)
    parser.add_argument("--delay", type=float, required=True, help="one-way delay, seconds")
    args = parser.parse_args(argv)
    started = time.monotonic()
    asyncio.run(serve(args.listen, args.upstream, args.delay))
    print(f"stopped after {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
