"""The wire protocol's constants, the enqueue encoder and the reply reader, in plain stdlib.

The hook runs after every build and must not pay for `dataclasses` or `typing`, so the part of
the protocol it needs lives here; protocol.py builds its typed messages on top of it. A unit
test checks that what `enqueue_lines` writes decodes with protocol.decode_request.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # mypy reads this name as true; at run time `typing` stays unloaded
if TYPE_CHECKING:
    from _socket import socket
    from collections.abc import Sequence
    from typing import Any

VERSION = 1
MAX_LINE = 1 << 20  # bytes in one message, including the newline
MAX_PATHS = 10_000  # paths in one enqueue
# Levels of arrays and objects one message may nest (the protocol itself uses 3): checked
# before parsing, since how deep `json` parses depends on the Python (3.14 has no limit).
MAX_DEPTH = 32

_ENVELOPE = 256  # room for "v", "op", "source", "drv" and punctuation besides the paths


# The hook encodes and decodes with the C accelerators the json package itself uses: importing
# `json` pulls in `re` and `enum`, about 10 ms, a third of the hook's run (bench/profiling.py).
# The output is byte for byte what json.dumps(obj, separators=(",", ":")) writes.
try:
    import _json
except ImportError:  # a Python without the accelerator: the json package, a little slower
    _json = None  # type: ignore[assignment]


class _Plain:
    """What _json's scanner reads from a JSONDecoder: plain JSON, no hooks, no NaN."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> object:
        raise ValueError(f"{name} is not JSON")


_scan = _json.make_scanner(_Plain()) if _json is not None else None  # type: ignore[arg-type]


def loads(text: str) -> Any:
    """One JSON document, like json.loads; ValueError for anything else."""
    if _scan is None:
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip())
    try:
        obj, end = _scan(text, start)
    except Exception:  # the scanner's errors need json.decoder loaded to be ValueErrors
        raise ValueError("not a JSON document") from None
    if text[end:].strip():
        raise ValueError("extra data after the JSON document")
    return obj


_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")  # less 1: +1 opens, -1 closes


def too_deep(line: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text `line` nests arrays and objects more than `limit` levels,
    brackets inside strings not counted. Exact for valid JSON (invalid JSON is refused
    either way: here or by the parser)."""
    if line.count(b"[") + line.count(b"{") <= limit:
        return False  # every real message: it cannot nest deeper than it has brackets
    # Escaped backslashes out first, so that the quote in `\\"` still ends its string.
    unescaped = line.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    depth = 0
    for step in outside.translate(_STEP, _NOT_BRACKETS):  # ~50 ms for 1 MiB of `[]`
        depth += step - 1
        if depth > limit:
            return True
    return False


def _encode(obj: object) -> str:
    if _json is None:
        import json

        return json.dumps(obj, separators=(",", ":"))
    quote = _json.encode_basestring_ascii
    if isinstance(obj, str):
        return quote(obj)
    if obj is None or isinstance(obj, bool):
        return {None: "null", True: "true", False: "false"}[obj]
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, list | tuple):
        return "[" + ",".join(_encode(item) for item in obj) + "]"
    if isinstance(obj, dict):
        return "{" + ",".join(quote(str(k)) + ":" + _encode(v) for k, v in obj.items()) + "}"
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _dumps(obj: object) -> bytes:
    return _encode(obj).encode("utf-8") + b"\n"


def split_paths(paths: Sequence[str], drv: str | None = None) -> list[list[str]]:
    """Split `paths` into chunks that each fit one enqueue request: at most MAX_PATHS, and
    within MAX_LINE once encoded (10,000 long store paths exceed 1 MiB)."""
    budget = MAX_LINE - _ENVELOPE - (len(_encode(drv)) if drv else 0)
    chunks: list[list[str]] = []
    current: list[str] = []
    used = 0
    for path in paths:
        cost = len(_encode(path)) + 1
        if current and (used + cost > budget or len(current) >= MAX_PATHS):
            chunks.append(current)
            current, used = [], 0
        current.append(path)
        used += cost
    if current:
        chunks.append(current)
    return chunks


def enqueue_lines(
    paths: Sequence[str], drv: str | None, source: str
) -> list[tuple[list[str], bytes]]:
    """Encode `paths` as one or more enqueue requests (split_paths' chunks).

    Returns (paths of the chunk, encoded line) pairs so a caller can tell which paths a reply
    acknowledged.
    """
    out = []
    for chunk in split_paths(paths, drv):
        msg: dict[str, object] = {"v": VERSION, "op": "enqueue", "paths": chunk, "source": source}
        if drv is not None:
            msg["drv"] = drv
        out.append((chunk, _dumps(msg)))
    return out


def remaining(deadline: float) -> float:
    """Seconds left before `deadline` (time.monotonic), or TimeoutError."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def read_line(sock: socket, buf: bytes, deadline: float) -> tuple[bytes, bytes]:
    """Read one reply line (without its newline) by `deadline`; return it and what followed.

    TimeoutError past the deadline, ConnectionError when the peer closes first, ValueError
    when the reply grows past MAX_LINE.
    """
    while b"\n" not in buf:
        if len(buf) > MAX_LINE:
            raise ValueError("reply longer than the protocol allows")
        sock.settimeout(remaining(deadline))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the daemon closed the connection without a reply")
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    return line, rest
