"""Hostile input on the daemon's socket: fuzzed requests, raw bytes, oversized, truncated
and malformed messages, paths that are not store paths, shell metacharacters, and thousands
of connections left open. The daemon must answer each with an error (or close), keep
serving, and its queue must hold only valid store paths.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.faults import raise_nofile

from . import strategies as S
from .audit import add_paths, audit, check, db_rows, row, run_hook
from .figures import FIGURES, Row
from .wire import ERROR_CODES, Answer, connect, exchange, request

pytestmark = pytest.mark.integration

FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


class Hostile:
    """A running daemon plus the bookkeeping of what was thrown at it."""

    def __init__(self, d: DaemonHarness, tmp: Path) -> None:
        self.d = d
        self.sock = Path(d.socket_path)
        self.store = str(d.config["nix"]["store_dir"])
        self.canary = tmp / "pwned"
        self.sent = 0
        self.started = time.monotonic()

    def send(self, data: bytes, **kw: Any) -> Answer:
        self.sent += 1
        return exchange(self.sock, data, **kw)

    def assert_error_or_close(self, answer: Answer, data: bytes) -> None:
        if answer.closed and not answer.raw:
            return
        reply = answer.reply
        assert reply is not None, f"not a JSON object reply to {data[:120]!r}: {answer.raw!r}"
        assert reply.get("v") == 1
        assert reply.get("ok") is False, f"{data[:200]!r} was accepted: {reply}"
        assert reply.get("error") in ERROR_CODES, reply
        assert isinstance(reply.get("message"), str) and reply["message"], reply

    def assert_serving(self) -> None:
        assert request(self.sock, {"v": 1, "op": "ping"}).get("ok") is True
        assert not self.canary.exists(), "a shell ran a payload from a request"
        assert self.d.running, self.d.log_text()[-3000:]


@pytest.fixture
def hostile(npq_daemon_factory: Any, tmp_path: Path) -> Iterator[Hostile]:
    # No uploads matter here; a long batch wait keeps nix copy off the two cores.
    d: DaemonHarness = npq_daemon_factory(hook=False, queue={"batch_wait": 5})
    d.start()
    h = Hostile(d, tmp_path)
    yield h
    # The queue holds only valid store paths, whatever was thrown at it.
    store = h.store
    bad = [r.path for r in db_rows(d.state_dir) if not S.is_store_path(store, r.path)]
    assert not bad, f"the queue accepted invalid paths: {bad[:5]}"
    assert not h.canary.exists()


def _accepted_paths_valid(h: Hostile, msg: dict[str, Any], reply: dict[str, Any]) -> None:
    if reply.get("ok") is not True or msg.get("op") != "enqueue":
        return
    paths, drv = msg.get("paths"), msg.get("drv")
    assert isinstance(paths, list) and all(S.is_store_path(h.store, p) for p in paths), msg
    assert drv is None or S.is_store_path(h.store, drv), msg


def test_fuzzed_requests(hostile: Hostile) -> None:
    h = hostile

    @FUZZ
    @given(S.messages(h.store, str(h.canary)))
    def one(msg: dict[str, Any]) -> None:
        data = S.encoded(msg)
        answer = h.send(data, half_close=False)
        reply = answer.reply
        assert reply is not None and reply.get("v") == 1, (data[:200], answer)
        if reply.get("ok") is False:
            assert reply.get("error") in ERROR_CODES, reply
        _accepted_paths_valid(h, msg, reply)

    one()
    h.assert_serving()
    FIGURES.record(_figures_row("fuzz: JSON requests", h))


def test_fuzzed_raw_bytes(hostile: Hostile) -> None:
    h = hostile

    @FUZZ
    @given(S.raw_lines())
    def one(data: bytes) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            msg = None
        answer = h.send(data)
        if isinstance(msg, dict) and msg.get("v") == 1 and msg.get("op") in S.OPS:
            return  # (rarely) a valid request: checked by the queue audit at the end
        h.assert_error_or_close(answer, data)

    one()
    h.assert_serving()
    FIGURES.record(_figures_row("fuzz: raw bytes", h))


def test_hostile_paths_are_refused_and_never_reach_a_shell(hostile: Hostile) -> None:
    h = hostile

    @FUZZ
    @given(st.lists(S.hostile_paths(h.store, str(h.canary)), min_size=1, max_size=4),
           st.sampled_from(S.SOURCES))
    def one(paths: list[str], source: str) -> None:
        msg = {"v": 1, "op": "enqueue", "paths": paths, "source": source}
        reply = request(h.sock, msg)
        if all(S.is_store_path(h.store, p) for p in paths):
            return  # the strategy can produce a valid path (e.g. a plain name)
        assert reply.get("ok") is False and reply.get("error") == "bad_path", (paths, reply)

    one()
    h.assert_serving()


def _big(h: Hostile) -> list[tuple[str, bytes]]:
    valid = f"{h.store}/{'a' * 32}-x"
    return [
        ("line over 1 MiB", b'{"v":1,"op":"enqueue","paths":["' + b"a" * (1 << 20) + b'"]}\n'),
        ("10,001 paths", json.dumps({"v": 1, "op": "enqueue",
                                     "paths": [valid] * 10_001}).encode() + b"\n"),
        ("nesting 100,000 deep", b"[" * 100_000 + b"]" * 100_000 + b"\n"),
        ("object nesting", b'{"v":1,"op":"status","x":' + b'{"a":' * 50_000 + b"1"
         + b"}" * 50_001 + b"\n"),
        ("integer of 5,000 digits", b'{"v":' + b"1" * 5000 + b',"op":"ping"}\n'),
    ]


def _malformed(h: Hostile) -> list[tuple[str, bytes]]:
    valid = f"{h.store}/{'a' * 32}-x"
    enq = '{"v":1,"op":"enqueue","paths":[%s]}\n'
    return [
        ("empty line", b"\n"),
        ("CRLF only", b"\r\n"),
        ("invalid UTF-8", (enq % '"' + valid + '\xff"').encode("latin-1")),
        ("UTF-8 BOM", b"\xef\xbb\xbf" + (enq % json.dumps(valid)).encode()),
        ("overlong UTF-8 slash", (enq % '"').encode() + b"\xc0\xaf" + b'etc"]}\n'),
        ("lone surrogate path", (enq % '"' + valid + '\\ud800"').encode()),
        ("lone surrogate target", b'{"v":1,"op":"retry","target":"\\udfff"}\n'),
        ("NUL in path", (enq % json.dumps(valid + "\0/etc")).encode()),
        ("NaN version", b'{"v":NaN,"op":"ping"}\n'),
        ("Infinity", b'{"v":1,"op":"enqueue","paths":[],"drv":Infinity}\n'),
        ("version true", b'{"v":true,"op":"ping"}\n'),
        ("version 1.0", b'{"v":1.0,"op":"ping"}\n'),
        ("version 2", b'{"v":2,"op":"ping"}\n'),
        ("no version", b'{"op":"ping"}\n'),
        ("array", b'[{"v":1,"op":"ping"}]\n'),
        ("two objects", b'{"v":1,"op":"ping"}{"v":1,"op":"ping"}\n'),
        ("string", b'"ping"\n'),
        ("unknown op", b'{"v":1,"op":"shutdown"}\n'),
        ("op as list", b'{"v":1,"op":["enqueue"]}\n'),
        ("paths as string", (enq.replace("[%s]", "%s") % json.dumps(valid)).encode()),
        ("paths of numbers", (enq % "1,2,3").encode()),
        ("source injection", b'{"v":1,"op":"enqueue","paths":[],"source":"hook;id"}\n'),
        ("drv outside store", b'{"v":1,"op":"enqueue","paths":[],"drv":"/etc/passwd"}\n'),
        ("path traversal", (enq % json.dumps(valid + "/../../../etc/passwd")).encode()),
        ("dot-dot name", (enq % json.dumps(f"{h.store}/{'a' * 32}-..")).encode()),
        ("store dir itself", (enq % json.dumps(h.store)).encode()),
        ("relative store path", (enq % json.dumps(valid.lstrip("/"))).encode()),
        ("newline in path", (enq % json.dumps(valid + "\n" + valid)).encode()),
        ("shell payload", (enq % json.dumps(f"{valid}$(touch {h.canary})")).encode()),
        ("retry unknown target", b'{"v":1,"op":"retry","target":"nope"}\n'),
        ("drop paths not a list", b'{"v":1,"op":"drop","paths":"all"}\n'),
    ]


@pytest.mark.parametrize("group", ["big", "malformed"])
def test_malformed_and_oversized_messages(hostile: Hostile, group: str) -> None:
    h = hostile
    cases = _big(h) if group == "big" else _malformed(h)
    for name, data in cases:
        answer = h.send(data)
        try:
            h.assert_error_or_close(answer, data)
        except AssertionError as exc:
            raise AssertionError(f"case {name!r}: {exc}") from None
        h.assert_serving()
    # Truncated: half a request, then the client goes away, at every kind of cut.
    whole = json.dumps({"v": 1, "op": "enqueue", "paths": [f"{h.store}/{'b' * 32}-y"]}).encode()
    for cut in range(0, len(whole), 7):
        with connect(h.sock) as sock:
            sock.sendall(whole[:cut])
        h.sent += 1
    h.assert_serving()
    assert not any("b" * 32 in r.path for r in db_rows(h.d.state_dir)), \
        "a request without its newline was acted upon"
    FIGURES.record(_figures_row(f"malformed: {group}", h))


def test_thousands_of_idle_connections(hostile: Hostile, tmp_path: Path) -> None:
    """2,000 clients connect and say nothing (or half a line); a real hook run meanwhile
    still gets its paths acknowledged by the daemon, not spooled."""
    h, d = hostile, hostile.d
    n = 2000
    limit = raise_nofile(n + 512)
    assert limit >= n + 100, f"RLIMIT_NOFILE {limit} too low for {n} connections"
    paths = add_paths(d.nix, tmp_path, 3)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        socks = []
        for i in range(n):
            sock = stack.enter_context(connect(h.sock, timeout=30))
            if i % 3 == 0:
                sock.sendall(b'{"v":1,"op":"enq')
            socks.append(sock)
        h.sent += n
        opened = time.monotonic() - started
        # While all of them are still open:
        reply = request(h.sock, {"v": 1, "op": "ping"})
        assert reply.get("ok") is True, reply
        run = run_hook(d, paths)
        assert run.returncode == 0
        assert "spooled" not in run.stderr, run.stderr
        assert not list(d.spool_dir.glob("*.spool"))
    queued = {r.path for r in db_rows(d.state_dir)}
    assert set(paths) <= queued
    d.wait_drained(timeout=300)
    outcome = audit(d, paths)
    check(outcome)
    print(f"measured: {n} connections opened in {opened:.2f} s; hook run with them open "
          f"{run.seconds * 1000:.0f} ms")
    FIGURES.record(row(f"{n} idle connections", outcome, faults=n, enqueued=len(paths),
                       seconds=time.monotonic() - started))


def _figures_row(name: str, h: Hostile) -> Row:
    """Messages thrown at the daemon; `enqueued`: valid-looking paths it accepted (they do
    not exist locally, so the worker drops them as garbage-collected, not uploaded)."""
    accepted = len(db_rows(h.d.state_dir))
    return Row(name, h.sent, accepted, 0, 0, 0, 0, time.monotonic() - h.started)
