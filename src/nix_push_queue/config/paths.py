"""Paths in a config, normalized before any rule reads them.

Rules compare paths ("not in the store", "spool_dir differs from state_dir") and the
generator writes them into units; a rule that compares text passes `//nix/store/key` or
`/var/lib/npq/./` where it would refuse the plain spelling. So every path field, found through
the schema (`absolute_path`, `secret_path`), and the path of every `file://` URL (`store_url`)
is normalized once, here: repeated slashes, `.` components and trailing slashes go. `..` is
kept for `semantic` to refuse: resolving it by text is wrong when a component is a symlink.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from ..nix.storepath import normalize
from .schema import load_schema
from .source import FieldPath

__all__ = ["fields", "file_url_path", "has_dotdot", "normalize", "normalized"]

Kind = Literal["path", "url"]
_KINDS: dict[str, Kind] = {
    "#/$defs/absolute_path": "path",
    "#/$defs/secret_path": "path",
    "#/$defs/store_url": "url",
}


def has_dotdot(path: str) -> bool:
    return ".." in path.split("/")


def file_url_path(url: str) -> str | None:
    """The decoded path of a `file://` URL, None for other schemes."""
    split = urlsplit(url)
    return unquote(split.path) if split.scheme == "file" else None


def fields(doc: Any) -> Iterator[tuple[FieldPath, Kind, str]]:
    """(field, kind, value) of every path and store URL in `doc`."""
    root = load_schema()
    yield from _walk(doc, root, root, ())


def _kind(node: dict[str, Any]) -> Kind | None:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref in _KINDS:
        return _KINDS[ref]
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(key, []):
            kind = _kind(sub) if isinstance(sub, dict) else None
            if kind is not None:
                return kind
    return None


def _walk(value: Any, node: dict[str, Any], root: dict[str, Any],
          at: FieldPath) -> Iterator[tuple[FieldPath, Kind, str]]:
    kind = _kind(node)
    if kind is not None:
        if isinstance(value, str):
            yield at, kind, value
        return
    ref = node.get("$ref")
    if isinstance(ref, str):
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        node = target
    if isinstance(value, dict):
        for name, sub in node.get("properties", {}).items():
            if name in value and isinstance(sub, dict):
                yield from _walk(value[name], sub, root, (*at, name))
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            yield from _walk(item, node["items"], root, (*at, i))


def normalized(doc: Any) -> Any:
    """A copy of the (schema-valid) `doc` with every path and `file://` URL path normalized."""
    result = copy.deepcopy(doc)
    for field, kind, value in list(fields(result)):
        new = normalize(value) if kind == "path" else _normalize_url(value)
        _set(result, field, new)
    return result


def _normalize_url(url: str) -> str:
    split = urlsplit(url)
    if split.scheme != "file" or split.netloc or not split.path.startswith("/"):
        return url  # `semantic` refuses a file URL with a host; other schemes are Nix's
    return split._replace(path=normalize(split.path)).geturl()


def _set(doc: Any, field: FieldPath, value: str) -> None:
    for part in field[:-1]:
        doc = doc[part]
    doc[field[-1]] = value
