"""The GC roots directory the hook and the daemon share: the hook roots a path before Nix
goes on, the daemon releases the root once every target has the path (docs/gc-roots.md).

Layout: `<nix state dir>/gcroots/nix-push-queue/<hash>-<name>`, a symlink to
`<store dir>/<hash>-<name>`. Nix's collector takes every symlink under `gcroots/` that points
into the store as a root, on single-user and multi-user installs alike; the one name per path
makes rooting idempotent. Stdlib only (os), for the hook.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # mypy reads this name as true; at run time `typing` stays unloaded
if TYPE_CHECKING:
    from collections.abc import Sequence

SUBDIR = "nix-push-queue"
TEMP_PREFIX = ".tmp-"  # a replacement link being renamed into place; never a root name


def roots_dir(state_dir: str) -> str:
    return state_dir.rstrip("/") + "/gcroots/" + SUBDIR


def add_root(directory: str, path: str) -> bool:
    """Root `path` (a store path). True if a link was made, False if it was there already
    (its time is refreshed: the daemon's sweep never releases a young root it does not know
    yet). Raises OSError (missing directory, no write access, something that is not a link
    under the path's name)."""
    link = os.path.join(directory, os.path.basename(path))
    try:
        os.symlink(path, link)
        return True
    except FileExistsError:
        pass
    try:
        target = os.readlink(link)
    except FileNotFoundError:  # released meanwhile: make it again
        os.symlink(path, link)
        return True
    except OSError as exc:  # not a link: never replaced (it is not ours), and nothing left
        raise OSError(exc.errno, f"{link} exists and is not a symlink; move it away "
                      "(docs/gc-roots.md)") from exc
    if target == path:
        os.utime(link, follow_symlinks=False)
        return False
    # A link of that name pointing elsewhere (another store dir): replace it atomically. A
    # temporary link left behind would pin its path for good: removed on any failure.
    temp = os.path.join(directory, f"{TEMP_PREFIX}{os.getpid()}-{os.path.basename(path)}")
    os.symlink(path, temp)
    try:
        os.replace(temp, link)
    except OSError:
        remove_root(directory, os.path.basename(temp))
        raise
    return True


def root_all(directory: str, paths: Sequence[str]) -> tuple[int, str | None]:
    """Root every path, making the directory first when it is missing (an admin's cleanup,
    a fresh Nix without gcroots/). Returns (paths rooted, the last problem or None)."""
    rooted, problem = 0, None
    for path in paths:
        try:
            try:
                add_root(directory, path)
            except FileNotFoundError:
                ensure_dir(directory)
                add_root(directory, path)
            rooted += 1
        except OSError as exc:
            problem = exc.strerror or str(exc)
    return rooted, problem


def ensure_dir(directory: str) -> None:
    """Create the roots directory if it is missing, and `gcroots/` above it too (Nix makes
    that one on its first collection; a fresh install may not have it yet). Installers
    create the directory with the right owner first; this covers single-user installs and a
    directory removed while the daemon runs."""
    for each in (os.path.dirname(directory), directory):
        try:  # noqa: SIM105 - contextlib would cost the hook an import
            os.mkdir(each, 0o755)
        except FileExistsError:
            pass


def remove_root(directory: str, name: str) -> bool:
    """Release the root named `name` (a store path's base name). False if it was not there."""
    try:
        os.unlink(os.path.join(directory, name))
        return True
    except FileNotFoundError:
        return False


def stale_temps(directory: str, before: float) -> int:
    """Remove temporary links (a process killed between its symlink and its rename) made
    before `before` (a time): each one pins its path. Returns links removed."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if (entry.name.startswith(TEMP_PREFIX) and entry.is_symlink()
                    and entry.stat(follow_symlinks=False).st_mtime < before):
                removed += remove_root(directory, entry.name)
        except OSError:
            continue
    return removed


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
