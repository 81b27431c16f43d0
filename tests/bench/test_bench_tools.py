"""The benchmark's own tools: the delaying proxy really delays and moves bytes intact, and
the statistics are right. (The benchmarks themselves run in test_bench_smoke.py.)

Here rather than in tests/unit: the package's Nix build runs tests/unit from a source that
has no bench/ (nix/package.nix keeps only what the package and its unit tests need)."""

from __future__ import annotations

import asyncio
import os
import time

from bench.common import percentile, summary_ms
from bench.delayproxy import start


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _through_proxy(delay: float, payload: bytes) -> tuple[bytes, float, float]:
    upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
    up_port = upstream.sockets[0].getsockname()[1]
    proxy = await start(("127.0.0.1", 0), ("127.0.0.1", up_port), delay)
    port = proxy.sockets[0].getsockname()[1]
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"x")
    await writer.drain()
    await reader.readexactly(1)
    first_rtt = time.monotonic() - t0
    t1 = time.monotonic()
    writer.write(payload)
    writer.write_eof()
    echoed = await reader.read()
    second = time.monotonic() - t1
    writer.close()
    proxy.close()
    upstream.close()
    return echoed, first_rtt, second


def test_delay_proxy_delays_each_way_and_keeps_the_bytes() -> None:
    payload = os.urandom(1 << 20)
    echoed, first_rtt, second = asyncio.run(_through_proxy(0.05, payload))
    assert echoed == payload
    # Lower bounds only: a loaded machine makes them longer, never shorter. The first byte
    # waits for the modelled handshake (3 one-way delays) and the way back (1 more).
    assert first_rtt >= 4 * 0.05
    assert second >= 2 * 0.05


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.5
    assert percentile(values, 99) == 99.01
    assert percentile([3.0], 99) == 3.0
    assert summary_ms([0.001, 0.003]) == {"p50_ms": 2.0, "p99_ms": 2.98, "max_ms": 3.0,
                                          "mean_ms": 2.0}
