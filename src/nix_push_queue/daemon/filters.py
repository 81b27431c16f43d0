"""Which paths are uploaded: exclude globs, and "an upstream cache already serves this".

Pure functions over strings and parsed `nix path-info --json` output; running Nix is the
uploader's job.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import NpqError

# A store path's base name is `<32-char nix base32 hash>-<name>`.
HASH_LEN = 32


class PathInfoError(NpqError):
    """`nix path-info --json` printed something we cannot read."""


def path_name(store_path: str) -> str:
    """The name after the hash: `/nix/store/<hash>-hello-2.12` -> `hello-2.12`."""
    base = store_path.rstrip("/").rsplit("/", 1)[-1]
    if len(base) > HASH_LEN and base[HASH_LEN] == "-":
        return base[HASH_LEN + 1:]
    return base


def excluded(store_path: str, patterns: Iterable[str]) -> bool:
    """True if the path's name matches one of the globs (`*.drv`, `*-source`).

    Case-sensitive on every platform, as store paths are.
    """
    name = path_name(store_path)
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


@dataclass(frozen=True)
class PathInfo:
    path: str
    references: tuple[str, ...]
    signatures: tuple[str, ...]
    nar_size: int | None = None

    def signed_by(self, key_names: Iterable[str]) -> bool:
        """True if one signature (`NAME:BASE64`) carries one of these key names.

        Only the name is compared: the local store accepted the path, so Nix already checked
        the signature (or trusts the path) when it arrived.
        """
        names = set(key_names)
        return any(sig.partition(":")[0] in names for sig in self.signatures)


def parse_path_infos(text: str) -> list[PathInfo]:
    """Parse `nix path-info --json` (Nix 2.8: a list of objects, `signatures` optional).

    Paths not valid in the store (`"valid": false`) are left out."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PathInfoError(f"nix path-info printed invalid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise PathInfoError("nix path-info --json did not print a list")
    infos = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise PathInfoError("nix path-info --json printed an entry without a path")
        if item.get("valid") is False:
            continue
        infos.append(PathInfo(
            path=item["path"],
            references=tuple(str(r) for r in item.get("references", ())),
            signatures=tuple(str(s) for s in item.get("signatures", ())),
            nar_size=item["narSize"] if isinstance(item.get("narSize"), int) else None,
        ))
    return infos


def upstream_signed(infos: Iterable[PathInfo], key_names: Sequence[str]) -> frozenset[str]:
    """Paths carrying a signature by one of `key_names` (served by an upstream cache)."""
    if not key_names:
        return frozenset()
    return frozenset(info.path for info in infos if info.signed_by(key_names))
