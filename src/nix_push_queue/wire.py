"""The wire protocol's constants and the enqueue encoder, in plain stdlib.

The hook runs after every build and must not pay for `dataclasses` or `typing`, so the part of
the protocol it needs lives here; protocol.py builds its typed messages on top of it. A unit
test checks that what `enqueue_lines` writes decodes with protocol.decode_request.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # mypy reads this name as true; at run time `typing` stays unloaded
if TYPE_CHECKING:
    from collections.abc import Sequence

VERSION = 1
MAX_LINE = 1 << 20  # bytes in one message, including the newline
MAX_PATHS = 10_000  # paths in one enqueue

_ENVELOPE = 256  # room for "v", "op", "source", "drv" and punctuation besides the paths


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n"


def enqueue_lines(
    paths: Sequence[str], drv: str | None, source: str
) -> list[tuple[list[str], bytes]]:
    """Encode `paths` as one or more enqueue requests, each within MAX_LINE and MAX_PATHS.

    Returns (paths of the chunk, encoded line) pairs so a caller can tell which paths a reply
    acknowledged. 10,000 long store paths exceed 1 MiB, hence the byte budget as well.
    """
    budget = MAX_LINE - _ENVELOPE - (len(json.dumps(drv)) if drv else 0)
    chunks: list[list[str]] = []
    current: list[str] = []
    used = 0
    for path in paths:
        cost = len(json.dumps(path)) + 1
        if current and (used + cost > budget or len(current) >= MAX_PATHS):
            chunks.append(current)
            current, used = [], 0
        current.append(path)
        used += cost
    if current:
        chunks.append(current)
    out = []
    for chunk in chunks:
        msg: dict[str, object] = {"v": VERSION, "op": "enqueue", "paths": chunk, "source": source}
        if drv is not None:
            msg["drv"] = drv
        out.append((chunk, _dumps(msg)))
    return out
