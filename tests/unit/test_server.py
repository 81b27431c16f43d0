"""The socket server over a real unix socket and a real QueueStore (no daemon, no Nix)."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nix_push_queue.daemon.listen import bind_socket, inherited_socket
from nix_push_queue.daemon.server import Intake, Server
from nix_push_queue.daemon.store import QueueStore
from nix_push_queue.errors import DaemonError
from nix_push_queue.wire.protocol import MAX_LINE, SpoolStats

STORE = "/nix/store"


def sp(i: int, name: str = "p") -> str:
    return f"{STORE}/{i:032d}-{name}"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="npq-srv-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def store(tmp_path: Path) -> QueueStore:
    return QueueStore(tmp_path / "q.sqlite")


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, raw: bytes) -> dict[str, Any] | None:
        self.writer.write(raw)
        await self.writer.drain()
        line = await asyncio.wait_for(self.reader.readline(), 10)
        return json.loads(line) if line else None

    async def req(self, **msg: Any) -> dict[str, Any]:
        reply = await self.send(json.dumps({"v": 1, **msg}).encode() + b"\n")
        assert reply is not None
        return reply

    def close(self) -> None:
        self.writer.close()


Scenario = Callable[[Server, Callable[[], Awaitable[Client]], list[str]], Awaitable[None]]


def serve(store: QueueStore, sock_dir: Path, scenario: Scenario, **kw: Any) -> None:
    exclude = tuple(kw.pop("exclude", ()))
    path = str(sock_dir / "s.sock")

    async def main() -> None:
        woken: list[str] = []
        intake = Intake(store, STORE, ("a", "b"), exclude, time.time)
        server = Server(intake, notify=lambda: woken.append("x"), **kw)
        await server.start(bind_socket(path, 0o660, None))

        async def connect() -> Client:
            return Client(*await asyncio.open_unix_connection(path, limit=MAX_LINE * 2))

        try:
            await scenario(server, connect, woken)
        finally:
            await server.close()

    asyncio.run(main())


def test_enqueue_is_committed_before_the_reply(store: QueueStore, sock_dir: Path) -> None:
    async def scenario(server: Server, connect: Any, woken: list[str]) -> None:
        c = await connect()
        reply = await c.req(op="enqueue", paths=[sp(1), sp(2), sp(1)], source="hook")
        assert reply == {"v": 1, "ok": True, "queued": 4, "skipped": 0}
        # another connection to the database sees the rows: they are committed
        with QueueStore(store.path) as other:
            assert len(other.jobs()) == 4
        assert woken
        again = await c.req(op="enqueue", paths=[sp(1)])
        assert again["queued"] == 0 and again["skipped"] == 2
        c.close()

    serve(store, sock_dir, scenario)


def test_excluded_paths_are_counted_not_queued(store: QueueStore, sock_dir: Path) -> None:
    async def scenario(server: Server, connect: Any, woken: list[str]) -> None:
        c = await connect()
        reply = await c.req(op="enqueue", paths=[sp(1, "x.drv"), sp(2, "out")])
        assert reply["queued"] == 2 and reply["skipped"] == 2
        assert {p for p, *_ in store.jobs()} == {sp(2, "out")}
        c.close()

    serve(store, sock_dir, scenario, exclude=["*.drv"])


def test_bad_input_gets_an_error_and_the_server_keeps_serving(store: QueueStore,
                                                               sock_dir: Path) -> None:
    async def scenario(server: Server, connect: Any, woken: list[str]) -> None:
        c = await connect()
        bad_path = await c.req(op="enqueue", paths=[sp(1), "/etc/passwd"])
        assert bad_path["ok"] is False and bad_path["error"] == "bad_path"
        assert store.jobs() == []  # nothing of a refused request is queued
        assert (await c.send(b"{not json\n"))["error"] == "bad_request"
        assert (await c.send(b"\xff\xfe\n"))["error"] == "bad_request"
        assert (await c.req(op="nope"))["error"] == "bad_request"
        assert (await c.send(b'{"v":2,"op":"ping"}\n'))["error"] == "bad_version"
        assert (await c.req(op="retry", target="zzz"))["error"] == "bad_request"
        assert (await c.req(op="ping"))["ok"] is True  # same connection still served
        c.close()

        big = await connect()
        reply = await big.send(b'{"v":1,"op":"enqueue","paths":["' + b"a" * MAX_LINE + b'"]}\n')
        assert reply is not None and reply["error"] == "too_large"
        assert await big.reader.read() == b""  # then closed
        big.close()
        fresh = await connect()
        assert (await fresh.req(op="ping"))["ok"] is True
        fresh.close()

    serve(store, sock_dir, scenario)


def test_idle_connections_are_closed(store: QueueStore, sock_dir: Path) -> None:
    async def scenario(server: Server, connect: Any, woken: list[str]) -> None:
        c = await connect()
        assert await asyncio.wait_for(c.reader.read(), 10) == b""
        assert server.connections == 0
        c.close()

    serve(store, sock_dir, scenario, idle_timeout=0.2)


def test_connection_limit_evicts_idle_refuses_when_all_busy(store: QueueStore,
                                                            sock_dir: Path) -> None:
    gate = asyncio.Event()

    async def blocked(fn: Callable[..., Any], *args: Any) -> Any:
        await gate.wait()  # every request stays "being handled" until the gate opens
        return fn(*args)

    async def scenario(server: Server, connect: Any, woken: list[str]) -> None:
        held = [await connect() for _ in range(3)]
        for c in held:
            assert (await c.req(op="ping"))["ok"] is True
        # at the limit, all idle: the oldest idle one is closed for the newcomer
        newcomer = await connect()
        assert (await newcomer.req(op="ping"))["ok"] is True
        assert await asyncio.wait_for(held[0].reader.read(), 10) == b""
        for c in [*held, newcomer]:
            c.close()
        for _ in range(200):
            if server.connections == 0:
                break
            await asyncio.sleep(0.01)
        # all busy: a fourth connection is refused, and the busy ones still get replies
        busy = [await connect() for _ in range(3)]
        for c in busy:
            c.writer.write(b'{"v":1,"op":"status"}\n')
            await c.writer.drain()
        await asyncio.sleep(0.2)
        refused = await connect()
        line = await asyncio.wait_for(refused.reader.readline(), 10)
        assert json.loads(line)["message"] == "too many connections"
        gate.set()
        for c in busy:
            reply = json.loads(await asyncio.wait_for(c.reader.readline(), 10))
            assert reply["ok"] is True
            c.close()
        refused.close()

    serve(store, sock_dir, scenario, max_connections=3, offload=blocked)


def test_status_retry_drop(store: QueueStore, sock_dir: Path) -> None:
    store.enqueue([sp(1), sp(2)], ["a"], 1.0)
    jobs = store.claim("a", 10, 2.0)
    store.fail([j.id for j in jobs], "boom", 3.0, None)

    async def scenario(server: Server, connect: Any, woken: list[str]) -> None:
        c = await connect()
        status = await c.req(op="status")
        assert status["targets"]["a"]["dead"] == 2
        assert status["targets"]["a"]["last_error"] == "boom"
        assert status["targets"]["b"]["pending"] == 0  # configured targets always listed
        assert (await c.req(op="retry", target="a", paths=[sp(1)]))["changed"] == 1
        assert (await c.req(op="drop", paths=[sp(2)]))["changed"] == 1
        assert {p: s for p, _, s, _ in store.jobs()} == {sp(1): "pending"}
        c.close()

    serve(store, sock_dir, scenario)


def test_bind_socket_replaces_stale_refuses_live(sock_dir: Path) -> None:
    path = str(sock_dir / "sub" / "d.sock")
    first = bind_socket(path, 0o660, None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    with pytest.raises(DaemonError, match="another daemon"):
        bind_socket(path, 0o660, None)
    first.close()  # the file stays behind, like after kill -9
    second = bind_socket(path, 0o600, None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second.close()
    os.unlink(path)
    Path(path).write_text("not a socket")
    with pytest.raises(DaemonError, match="not a socket"):
        bind_socket(path, 0o660, None)
    os.unlink(path)
    group = grp.getgrgid(os.getgid()).gr_name
    with bind_socket(path, 0o660, group):
        assert os.stat(path).st_gid == os.getgid()
    os.unlink(path)
    with pytest.raises(DaemonError, match="no-such-group-npq"):
        bind_socket(path, 0o660, "no-such-group-npq")


def test_inherited_socket_must_be_unix_stream(sock_dir: Path) -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(DaemonError, match="unix stream"):
            inherited_socket(tcp.fileno())
    finally:
        tcp.close()
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(sock_dir / "inherited.sock"))
    try:
        sock = inherited_socket(unix.fileno())
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert not os.get_inheritable(unix.fileno())
        sock.detach()
    finally:
        unix.close()


def test_closing_leaves_an_inherited_socket_file(store: QueueStore, sock_dir: Path) -> None:
    """systemd owns the socket it passes: Python 3.13+'s unix server would unlink it on close
    unless told not to, and the .socket unit could not start the daemon again."""
    path = sock_dir / "activated.sock"
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(path))
    unix.listen()

    async def main() -> None:
        server = Server(Intake(store, STORE, ("a",), (), time.time), notify=lambda: None)
        await server.start(inherited_socket(unix.detach()))
        client = Client(*await asyncio.open_unix_connection(str(path)))
        assert (await client.req(op="ping"))["ok"] is True
        client.close()
        await client.writer.wait_closed()
        await server.close()

    asyncio.run(main())
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_buffer_budget_closes_the_greediest_and_is_released(
        store: QueueStore, sock_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    budget = 256 << 10

    async def scenario(server: Server, connect: Any, woken: list[str]) -> None:
        small = await connect()
        small.writer.write(b'{"v":1,"op":')  # a hook's request, half sent
        greedy = [await connect() for _ in range(3)]
        for c in greedy:
            c.writer.write(b"x" * (120 << 10))  # 360 KiB together: over the budget
            await c.writer.drain()
        reads = [asyncio.ensure_future(c.reader.readline()) for c in greedy]
        done, pending = await asyncio.wait(reads, timeout=10,
                                           return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1, "one victim is enough to get under the budget"
        assert json.loads(done.pop().result())["error"] == "too_large"
        assert server.limits.held <= budget
        for task in pending:
            task.cancel()
        small.writer.write(b'"ping"}\n')  # the small one was never the victim
        assert json.loads(await asyncio.wait_for(small.reader.readline(), 10))["ok"] is True
        for c in [small, *greedy]:
            c.close()
        for _ in range(200):
            if server.connections == 0:
                break
            await asyncio.sleep(0.01)
        assert server.connections == 0 and server.limits.held == 0

    serve(store, sock_dir, scenario, buffer_budget=budget)
    lines = [r for r in caplog.records if "closing a connection holding" in r.getMessage()]
    assert len(lines) == 1
    assert not any(r.exc_info for r in caplog.records)


def test_evicting_idle_connections_logs_no_traceback(
        store: QueueStore, sock_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(server: Server, connect: Any, woken: list[str]) -> None:
        errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        clients = [await connect() for _ in range(20)]  # 4 at a time fit: 16 evictions
        clients[-1].writer.write(b'{"v":1,"op":"ping"}\n')
        assert json.loads(await asyncio.wait_for(clients[-1].reader.readline(), 10))["ok"]
        for c in clients[:16]:
            assert await asyncio.wait_for(c.reader.read(), 10) == b""
        for c in clients:
            c.close()
        await asyncio.sleep(0.1)
        assert server.limits.evicted == 16
        assert not errors, errors

    serve(store, sock_dir, scenario, max_connections=4)
    assert not any(r.exc_info or "Traceback" in r.getMessage() for r in caplog.records)


def test_status_counts_the_spool_before_reading_the_queue(store: QueueStore,
                                                          sock_dir: Path) -> None:
    """A spool file ingested between the two reads must be seen in one of them: the count
    comes first, so rows committed right after it (and before the unlink) are read."""
    calls: list[str] = []

    def spool_stats() -> SpoolStats:
        calls.append("counted")
        # ingestion finishes right after the count: rows committed, the file unlinked
        store.enqueue([sp(7)], ["a", "b"], time.time())
        return SpoolStats(pending=0, quarantined=3)

    async def scenario(server: Server, connect: Any, woken: list[str]) -> None:
        c = await connect()
        status = await c.req(op="status")
        assert calls == ["counted"]
        assert status["spool"] == {"pending": 0, "quarantined": 3, "error": None}
        assert status["targets"]["a"]["pending"] == 1, "a spooled path fell between the reads"
        c.close()

    serve(store, sock_dir, scenario, spool_stats=spool_stats)
