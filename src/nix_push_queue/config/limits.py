"""Bounds on the work reading a config may cost, and the checks every format shares.

A config is a few kilobytes, a few levels deep. These limits sit far above that and far
below what would cost seconds or hundreds of megabytes, so a careless or hostile file gets a
clear error at once instead of a stalled or crashed `validate`: the whole file (or the JSON a
`.nix` file evaluates to) at most MAX_BYTES, nested at most MAX_DEPTH levels, at most
MAX_NODES values once YAML aliases are expanded (each use of an alias counts in full, which
is what anything walking the document pays).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000
# nix-instantiate on a config takes well under a second; importing a nixpkgs lib a few.
EVAL_TIMEOUT = 30.0
# Address space of nix-instantiate: evaluating a config takes tens of megabytes.
EVAL_MEMORY = 1024**3

FieldPath = tuple[str | int, ...]

TOO_BIG = (f"the file is larger than {MAX_BYTES // 1024} KiB; a config is a few kilobytes, "
           "check that this is the right file")
TOO_DEEP = (f"nested more than {MAX_DEPTH} levels deep; a config needs a handful, "
            "flatten it")
TOO_MANY = (f"expands to more than {MAX_NODES:,} values (every use of a YAML alias counts in "
            "full); write the values out or reuse fewer aliases")


@dataclass(frozen=True)
class Finding:
    """A problem found in loaded data, at a field (located to a line by the caller)."""

    path: FieldPath
    message: str


def json_depth_problem(text: str) -> tuple[int, str] | None:
    """(line, message) when JSON `text` nests deeper than MAX_DEPTH. Scans without parsing,
    so a file deep enough to exhaust the parser's recursion never reaches it."""
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        bracket = match.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                return text.count("\n", 0, match.start()) + 1, TOO_DEEP
        elif bracket in ("]", "}"):
            depth -= 1
    return None


# Strings first, so brackets inside them are skipped.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def data_problems(data: Any, duplicates: dict[int, list[str]] | None = None) -> list[Finding]:
    """What no schema can see in decoded data: numbers that are not finite (NaN, Infinity,
    1e999), keys that are not strings, too many values, and (for JSON) `duplicates`, the
    keys each object (by id) held twice. Walks without recursion."""
    found: list[Finding] = []
    stack: list[tuple[Any, FieldPath]] = [(data, ())]
    count = 0
    while stack:
        value, path = stack.pop()
        count += 1
        if count > MAX_NODES:
            return [Finding((), TOO_MANY)]
        if isinstance(value, float) and not math.isfinite(value):
            found.append(Finding(path, "is not a finite number (NaN or infinity); give a "
                                       "number such as 30"))
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in reversed(list(enumerate(value))))
        elif isinstance(value, dict):
            for key in (duplicates or {}).get(id(value), []):
                found.append(Finding((*path, key), f"duplicate key {key!r}; keep one of them"))
            for key, item in reversed(list(value.items())):
                if not isinstance(key, str):
                    found.append(Finding(path, f"key {key!r} is not a string; quote it"))
                    continue
                stack.append((item, (*path, key)))
    return found
