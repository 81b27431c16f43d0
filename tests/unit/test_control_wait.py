"""`wait`'s client side against a scripted daemon on a real unix socket: the spool count the
daemon reports holds the barrier (no config, no spool directory needed), and a daemon that
does not answer cannot keep `wait --timeout` from returning."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nix_push_queue.client.control import ControlClient, wait_drained
from nix_push_queue.errors import DeadLetters, WaitTimeout


def _status(pending_rows: int, spool_files: int) -> bytes:
    return json.dumps({"v": 1, "ok": True,
                       "targets": {"a": {"pending": pending_rows, "inflight": 0, "done": 0,
                                         "dead": 0, "skipped": 0}},
                       "spool": {"pending": spool_files, "quarantined": 0, "error": None}}
                      ).encode() + b"\n"


@pytest.fixture
def sock_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        yield str(Path(d) / "d.sock")


def _serve(path: str, replies: list[bytes | None]) -> threading.Thread:
    """Answer one connection per item: the reply, or (None) read and never answer."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)

    def run() -> None:
        held = []
        for reply in replies:
            conn, _ = server.accept()
            conn.recv(65536)
            if reply is None:
                held.append(conn)
                continue
            conn.sendall(reply)
            conn.close()
        time.sleep(5)
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_spool_backlog_reported_by_the_daemon_holds_the_barrier(sock_path: str) -> None:
    # The queue is empty at every poll, but the spool held files for two polls.
    _serve(sock_path, [_status(0, 400), _status(0, 3), _status(0, 0)])
    polls: list[int] = []
    wait_drained(ControlClient(sock_path), timeout=30, poll=0.01,
                 on_poll=lambda stats: polls.append(1))
    assert len(polls) == 3


def test_a_silent_daemon_cannot_hold_wait_past_its_timeout(sock_path: str) -> None:
    _serve(sock_path, [_status(5, 0), None])
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="did not answer"):
        wait_drained(ControlClient(sock_path), timeout=1.5, poll=0.01)
    assert time.monotonic() - started < 5


def test_dead_letters_take_precedence_over_lost_paths(sock_path: str) -> None:
    # docs/ci.md: exit 10 (dead) over 13 (lost) when a run has both, as `wait --paths` does.
    reply = json.dumps({"v": 1, "ok": True,
                        "targets": {"a": {"pending": 0, "inflight": 0, "done": 0, "dead": 1,
                                          "skipped": 0, "gone": 2, "released": 0,
                                          "last_error": "nix copy exited 1"}},
                        "spool": {"pending": 0, "quarantined": 0, "error": None}}
                       ).encode() + b"\n"
    _serve(sock_path, [reply])
    with pytest.raises(DeadLetters, match=r"a: 1 dead .*a: 2 lost") as caught:
        wait_drained(ControlClient(sock_path), timeout=30, poll=0.01)
    assert caught.value.exit_code == 10
