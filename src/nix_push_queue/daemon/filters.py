"""Which paths are uploaded: exclude globs, and "an upstream cache already serves this".

Pure functions over strings and parsed `nix path-info --json` records (nix.pathinfo parses
every form Nix prints); running Nix is the uploader's job.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from ..nix.pathinfo import PathInfo

# A store path's base name is `<32-char nix base32 hash>-<name>`.
HASH_LEN = 32


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


def upstream_signed(infos: Iterable[PathInfo], key_names: Sequence[str]) -> frozenset[str]:
    """Paths carrying a signature by one of `key_names` (served by an upstream cache)."""
    if not key_names:
        return frozenset()
    return frozenset(info.path for info in infos if info.signed_by(key_names))
