"""The GC roots directory the hook and the daemon share: the hook roots a path before Nix
goes on, the daemon releases the root once every target has the path (docs/gc-roots.md).

Layout: `<nix state dir>/gcroots/nix-push-queue/<hash>-<name>`, a symlink to
`<store dir>/<hash>-<name>`. Nix's collector takes every symlink under `gcroots/` that points
into the store as a root, on single-user and multi-user installs alike; the one name per path
makes rooting idempotent. Stdlib only (os), for the hook.
"""

from __future__ import annotations

import os

SUBDIR = "nix-push-queue"
TEMP_PREFIX = ".tmp-"  # a replacement link being renamed into place; never a root name


def roots_dir(state_dir: str) -> str:
    return state_dir.rstrip("/") + "/gcroots/" + SUBDIR


def add_root(directory: str, path: str) -> bool:
    """Root `path` (a store path). True if a link was made, False if it was there already
    (its time is refreshed: the daemon's sweep never releases a young root it does not know
    yet). Raises OSError (missing directory, no write access)."""
    link = os.path.join(directory, os.path.basename(path))
    try:
        os.symlink(path, link)
        return True
    except FileExistsError:
        pass
    try:
        if os.readlink(link) == path:
            os.utime(link, follow_symlinks=False)
            return False
    except OSError:
        pass
    # A link of that name pointing elsewhere (another store dir): replace it atomically.
    temp = os.path.join(directory, f"{TEMP_PREFIX}{os.getpid()}-{os.path.basename(path)}")
    os.symlink(path, temp)
    os.replace(temp, link)
    return True


def ensure_dir(directory: str) -> None:
    """Create the roots directory if it is missing (its parent, gcroots/, belongs to Nix).
    Installers create it with the right owner first; this covers single-user installs."""
    try:  # noqa: SIM105 - contextlib would cost the hook an import
        os.mkdir(directory, 0o755)
    except FileExistsError:
        pass


def remove_root(directory: str, name: str) -> bool:
    """Release the root named `name` (a store path's base name). False if it was not there."""
    try:
        os.unlink(os.path.join(directory, name))
        return True
    except FileNotFoundError:
        return False


def list_roots(directory: str) -> dict[str, tuple[str, float]]:
    """name -> (link target, link mtime) of every root; a missing directory has none."""
    out: dict[str, tuple[str, float]] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return out
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX) or not entry.is_symlink():
            continue
        try:
            out[entry.name] = (os.readlink(entry.path),
                               entry.stat(follow_symlinks=False).st_mtime)
        except OSError:
            continue
    return out


def remove_all(directory: str) -> int:
    """Uninstall: release every root and remove the directory; returns roots released."""
    names = list(list_roots(directory))
    for name in names:
        remove_root(directory, name)
    try:  # noqa: SIM105 - contextlib would cost the hook an import
        os.rmdir(directory)
    except FileNotFoundError:
        pass
    return len(names)
