"""A deliberately naive client for the daemon's socket: it sends exactly the bytes it is
given, so the fuzzer can say things protocol.py would never encode.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ERROR_CODES = frozenset({"bad_request", "too_large", "bad_version", "bad_path", "internal"})


@dataclass(frozen=True)
class Answer:
    """What the daemon did with one message: replied with a line, or closed the connection."""

    raw: bytes
    closed: bool

    @property
    def reply(self) -> dict[str, Any] | None:
        if not self.raw:
            return None
        value = json.loads(self.raw)
        return value if isinstance(value, dict) else None


def connect(sock_path: Path, timeout: float = 30) -> socket.socket:
    """Connect, waiting while the listen backlog is full (a non-blocking unix socket
    reports that as EAGAIN instead of waiting)."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(sock_path))
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def read_line(sock: socket.socket, limit: int = 1 << 20) -> tuple[bytes, bool]:
    """One reply line (without the newline) and whether the peer closed instead.

    A reset counts as closed: a server may drop a connection that sent garbage.
    """
    buf = bytearray()
    while b"\n" not in buf:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(buf), True
        if not chunk:
            return bytes(buf), True
        buf += chunk
        if len(buf) > limit:
            raise AssertionError("reply line larger than the protocol's limit")
    line, _, _ = bytes(buf).partition(b"\n")
    return line, False


def exchange(sock_path: Path, data: bytes, *, half_close: bool = True,
             timeout: float = 30) -> Answer:
    """Send `data` on a fresh connection and read what comes back.

    With `half_close` the write side is shut after sending, as a client that gave up would;
    the daemon must then answer or close, never wait forever.
    """
    with connect(sock_path, timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            # The daemon may stop reading an oversized message and close: that is an answer.
            line, _ = read_line(sock)
            return Answer(line, True)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        line, closed = read_line(sock)
        return Answer(line, closed)


def request(sock_path: Path, message: dict[str, Any], *, timeout: float = 30) -> dict[str, Any]:
    """A well-formed request and its reply (which must be a JSON object)."""
    answer = exchange(sock_path, json.dumps(message).encode() + b"\n", half_close=False,
                      timeout=timeout)
    reply = answer.reply
    if reply is None:
        raise AssertionError(f"no reply to {message.get('op')}: {answer.raw!r}")
    return reply
