"""Strict reading of one protocol line and its fields (protocol.py's decoding helpers).

Every failure is a ProtocolError naming the field, whose `code` the daemon sends back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import ProtocolError
from .framing import MAX_DEPTH, MAX_LINE, MAX_PATHS, VERSION, too_deep


def load_line(line: bytes) -> dict[str, Any]:
    """Bytes -> JSON object with the right version, or ProtocolError."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line of {len(line)} bytes exceeds {MAX_LINE}", "too_large")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"not UTF-8 at byte {exc.start}") from None
    if text.endswith("\n"):
        text = text[:-1]
    if "\n" in text:
        raise ProtocolError("more than one line in a message")
    if too_deep(line):
        raise ProtocolError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ProtocolError("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise ProtocolError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("v")
    if version != VERSION or not is_int(version):
        raise ProtocolError(
            f"protocol version {version!r} is not supported (this side speaks {VERSION})",
            "bad_version", "v")
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def get_str(obj: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"field '{key}' must be a string", field=key)
    return value


def get_int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"field '{key}' must be a non-negative integer", field=key)
    return value


def get_paths(obj: Mapping[str, Any], *, optional: bool = False) -> tuple[str, ...] | None:
    value = obj.get("paths")
    if value is None and optional:
        return None
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ProtocolError("field 'paths' must be a list of strings", field="paths")
    if len(value) > MAX_PATHS:
        raise ProtocolError(
            f"{len(value)} paths in one message exceed {MAX_PATHS}", "too_large", "paths")
    return tuple(value)


def get_num(obj: Mapping[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"field '{key}' must be a number or null", field=key)
    return float(value)


def get_bool(obj: Mapping[str, Any], key: str) -> bool:
    """An optional flag: absent (an older peer) is False."""
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise ProtocolError(f"field '{key}' must be true or false", field=key)
    return value
