"""Parse the JSON that `nix path-info --json` and `nix config show --json` print, in every
form the Nix versions we support print it (recorded from the real binaries in
tests/data/nix-dialects/):

- Nix <= 2.18 (and Lix): a list of objects with a `path`; an invalid path is
  `{"path": ..., "valid": false}`.
- Nix 2.19 - 2.32, and 2.33+ with `--json-format 1` (or no flag): an object keyed by store
  path; an invalid path maps to `null`. 2.33+ adds `"version": 1` and `storeDir` to each.
- Nix 2.33+ with `--json-format 2`: `{"version": 2, "storeDir": DIR, "info": {...}}`, the
  infos keyed by base name (`<hash>-<name>`, no store dir), `references` as base names too.

Anything else raises PathInfoError: a form we do not know must stop the upload loudly, never
be retried as if the network had failed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import NpqError

SNIPPET = 200
# Nix's base32 alphabet, for rendering a structured nix32 hash as SRI.
_NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"


class NixOutputError(NpqError):
    """Nix printed JSON we cannot read (a Nix version or build we do not know)."""


class PathInfoError(NixOutputError):
    """`nix path-info --json` printed a form we do not know."""


@dataclass(frozen=True)
class PathInfo:
    path: str
    references: tuple[str, ...]
    signatures: tuple[str, ...]
    nar_size: int | None = None
    nar_hash: str | None = None  # SRI (`sha256-BASE64=`): every Nix since 2.8 prints that

    def signed_by(self, key_names: Iterable[str]) -> bool:
        """True if one signature (`NAME:BASE64`) carries one of these key names.

        Only the name is compared: the local store accepted the path, so Nix already checked
        the signature (or trusts the path) when it arrived.
        """
        names = set(key_names)
        return any(sig.partition(":")[0] in names for sig in self.signatures)


def _fail(what: str, text: str) -> PathInfoError:
    snippet = text.strip()[:SNIPPET]
    return PathInfoError(f"nix path-info --json: {what} (output starts: {snippet!r}); this Nix "
                         "prints a form nix-push-queue does not know: please report it with "
                         "`nix --version`")


def parse_path_infos(text: str) -> list[PathInfo]:
    """The valid paths in `nix path-info --json` output; invalid ones are left out."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"invalid JSON ({exc})", text) from exc
    if isinstance(data, list):
        return [info for item in data if (info := _list_item(item, text)) is not None]
    if isinstance(data, dict) and "info" in data:
        return _format2(data, text)
    if isinstance(data, dict):
        return [info for path, item in data.items()
                if (info := _keyed_item(path, item, text)) is not None]
    raise _fail("neither a list nor an object", text)


def _format2(data: Mapping[str, Any], text: str) -> list[PathInfo]:
    store_dir, infos = data.get("storeDir"), data.get("info")
    if data.get("version") != 2:
        raise _fail(f"unknown format version {data.get('version')!r}", text)
    if not isinstance(store_dir, str) or not store_dir.startswith("/") \
            or not isinstance(infos, dict):
        raise _fail("format 2 without a storeDir or an info object", text)
    return [info for base, item in infos.items()
            if (info := _keyed_item(f"{store_dir.rstrip('/')}/{base}", item, text)) is not None]


def _list_item(item: object, text: str) -> PathInfo | None:
    if not isinstance(item, dict) or not isinstance(item.get("path"), str):
        raise _fail("a list entry without a path", text)
    if item.get("valid") is False:
        return None
    return _info(item["path"], item, text)


def _keyed_item(path: str, item: object, text: str) -> PathInfo | None:
    if item is None:
        return None  # not valid in that store
    if not path.startswith("/") or not isinstance(item, dict):
        raise _fail(f"the entry {path!r} is not a store path with an object", text)
    version = item.get("version", 1)
    if version not in (1, 2):
        raise _fail(f"unknown format version {version!r}", text)
    return _info(path, item, text)


def _info(path: str, item: Mapping[str, Any], text: str) -> PathInfo:
    store_dir = path.rsplit("/", 1)[0]
    refs = item.get("references", [])
    sigs = item.get("signatures", [])
    size = item.get("narSize")
    nar_hash = item.get("narHash")
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise _fail(f"references of {path} are not a list of strings", text)
    if not isinstance(sigs, list) or not all(isinstance(s, str) for s in sigs):
        raise _fail(f"signatures of {path} are not a list of strings", text)
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        raise _fail(f"narSize of {path} is not an integer", text)
    if nar_hash is not None and not isinstance(nar_hash, str):
        raise _fail(f"narHash of {path} is not a string", text)
    return PathInfo(
        path=path,
        # Format 2 prints references as `<hash>-<name>`, without the store dir.
        references=tuple(r if r.startswith("/") else f"{store_dir}/{r}" for r in refs),
        signatures=tuple(sigs),
        nar_size=size,
        nar_hash=nar_hash,
    )


def to_sri(nix_hash: str) -> str:
    """`sha256:<nix32>` (what `nix-store --query --hash` prints) as SRI, the spelling of
    `narHash` in path-info; SRI input is returned as is."""
    algorithm, sep, digest = nix_hash.partition(":")
    if not sep:
        return nix_hash
    return f"{algorithm}-{base64.b64encode(_nix32_decode(digest)).decode()}"


def _nix32_decode(digest: str) -> bytes:
    """Nix's base32: little-endian bit order, the last character first."""
    size = len(digest) * 5 // 8
    out = bytearray(size)
    for n, char in enumerate(reversed(digest)):
        digit = _NIX32.find(char)
        if digit < 0:
            raise NixOutputError(f"{char!r} is not a nix32 digit")
        bit = n * 5
        i, j = divmod(bit, 8)
        if i < size:
            out[i] |= (digit << j) & 0xFF
        if i + 1 < size:
            out[i + 1] |= digit >> (8 - j)
    return bytes(out)


def parse_settings(text: str) -> dict[str, object]:
    """`nix config show --json` (or `show-config --json`): setting name -> value."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NixOutputError(f"nix config show --json printed invalid JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "value" in v
                                             for v in data.values()):
        raise NixOutputError("nix config show --json: expected an object of "
                            f"{{name: {{value: ...}}}} (output starts: {text.strip()[:SNIPPET]!r})")
    return {name: entry["value"] for name, entry in data.items()}
