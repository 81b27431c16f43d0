"""Store path validation, shared by the hook and the daemon. Pure functions, stdlib only.

A store path is `<store_dir>/<hash>-<name>`: exactly one component below the store dir, a
32-character hash in Nix's base32 alphabet, and a name following Nix's rules (characters
`[A-Za-z0-9+-._?=]`, not starting with '.', at most 211 characters). Everything a caller may
later put on a command line or in a log passes through here first.
"""

from __future__ import annotations

NIX_BASE32 = frozenset("0123456789abcdfghijklmnpqrsvwxyz")
HASH_LEN = 32
MAX_NAME_LEN = 211
NAME_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-._?="
)


def normalize(path: str) -> str:
    """`path` without repeated slashes (`//nix/store` included: POSIX leaves a leading `//`
    to the implementation), `.` components or a trailing slash. `..` stays: read as text it
    is wrong behind a symlink, so callers refuse it where it matters."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return ("/" if path.startswith("/") else "") + "/".join(parts) or "."


def problem(path: str, store_dir: str) -> str | None:
    """Why `path` is not a store path directly under `store_dir`, or None when it is one."""
    if not isinstance(path, str):
        return "not a string"
    prefix = store_dir.rstrip("/") + "/"
    if not store_dir.startswith("/") or len(prefix) < 2:
        return f"store dir {store_dir!r} is not an absolute path"
    if not path.startswith(prefix):
        return f"not inside the store {store_dir}"
    base = path[len(prefix):]
    if "/" in base:
        return "not directly below the store dir"
    return name_problem(base)


def name_problem(base: str) -> str | None:
    """Why `base` (the `<hash>-<name>` part) is not valid, or None."""
    if len(base) < HASH_LEN + 2 or base[HASH_LEN] != "-":
        return "expected <32-character hash>-<name>"
    digest, name = base[:HASH_LEN], base[HASH_LEN + 1:]
    if not NIX_BASE32.issuperset(digest):
        return "hash is not nix-base32"
    if len(name) > MAX_NAME_LEN:
        return f"name longer than {MAX_NAME_LEN} characters"
    if name.startswith("."):
        return "name starts with '.'"
    if not NAME_CHARS.issuperset(name):
        return "name has characters outside [A-Za-z0-9+-._?=]"
    return None


def is_store_path(path: str, store_dir: str) -> bool:
    return problem(path, store_dir) is None


def is_derivation(path: str, store_dir: str) -> bool:
    return path.endswith(".drv") and is_store_path(path, store_dir)


def hash_part(path: str) -> str:
    """The hash of a store path (or of its base name): what a binary cache names it by."""
    return path.rsplit("/", 1)[-1][:HASH_LEN]


def narinfo_name(path: str) -> str:
    """`<hash>.narinfo`: the file a binary cache keeps a store path's metadata in."""
    return hash_part(path) + ".narinfo"
