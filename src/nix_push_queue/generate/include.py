"""Add or remove the one `!include` line that pulls our fragment into an existing nix.conf.

The user's own lines are never rewritten: adding appends one line, removing takes out exactly
what adding put in, so add-then-remove gives back the file byte for byte (or no file, when
there was none). The first change backs the original up to FILE.nix-push-queue.bak; removal
deletes that backup again once the file matches it. `!include` (unlike `include`) is
silently skipped by Nix when the fragment is missing, so removing the generated files
before this line cannot break Nix.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import OutputError

BACKUP_SUFFIX = ".nix-push-queue.bak"


def include_line(fragment: str) -> str:
    return f"!include {fragment}"


def _check_fragment(fragment: str) -> None:
    # Nix splits the line on whitespace and wants exactly two words.
    if not fragment.startswith("/") or any(c.isspace() for c in fragment) or "#" in fragment:
        raise OutputError(f"cannot include {fragment!r} from nix.conf: the path must be "
                          "absolute, without whitespace or '#'")


def _read(conf: Path) -> bytes | None:
    if conf.is_symlink():
        raise OutputError(f"{conf} is a symlink (to {os.readlink(conf)}); edit the file it "
                          "points to, or on NixOS set nix.settings instead")
    try:
        return conf.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"cannot read {conf}: {exc}") from exc


def _has_line(text: bytes, fragment: str) -> bool:
    for raw in text.decode("utf-8", "replace").splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) == 2 and words[0] in ("include", "!include") and words[1] == fragment:
            return True
    return False


def check_include(conf: Path, fragment: str) -> None:
    """Raise OutputError now if `add_include(conf, fragment)` could not work: run before
    anything else is written. Tries what adding does (a new file beside `conf`, owned as
    `conf` is), so a read-only or immutable directory, or a file we may not chown, fails
    here and not half-way."""
    _check_fragment(fragment)
    old = _read(conf)
    if not conf.parent.is_dir():
        raise OutputError(f"cannot include into {conf}: {conf.parent} is not a directory")
    if old is not None and _has_line(old, fragment):
        return
    probe = conf.with_name(f".{conf.name}.npq-probe-{secrets.token_hex(4)}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            if old is not None:
                st = conf.stat()
                os.fchown(fd, st.st_uid, st.st_gid)
        finally:
            os.close(fd)
            probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot include into {conf}: {exc.strerror} (writing in "
                          f"{conf.parent}); nothing was changed") from exc


def add_include(conf: Path, fragment: str) -> bool:
    """Make `conf` include `fragment`. Returns False when it already does."""
    _check_fragment(fragment)
    old = _read(conf)
    if old is not None and _has_line(old, fragment):
        return False
    line = include_line(fragment).encode()
    if old is None:
        _write_atomic(conf, line + b"\n", like=None)
        return True
    backup = conf.with_name(conf.name + BACKUP_SUFFIX)
    made_backup = not os.path.lexists(backup)
    if made_backup:
        _write_atomic(backup, old, like=conf)
    # A file without a final newline gets one before our line and none after, so removing
    # "\n" + line restores it exactly.
    new = old + b"\n" + line if old and not old.endswith(b"\n") else old + line + b"\n"
    try:
        _write_atomic(conf, new, like=conf)
    except OutputError:
        if made_backup:  # all or nothing: no backup of a change that did not happen
            backup.unlink(missing_ok=True)
        raise
    return True


def remove_include(conf: Path, fragment: str) -> bool:
    """Take out the line `add_include` added. Returns False when there was none."""
    _check_fragment(fragment)
    old = _read(conf)
    if old is None:
        return False
    line = include_line(fragment).encode()
    if old.endswith(b"\n" + line):
        new = old[: -len(line) - 1]
    elif old.startswith(line + b"\n"):
        new = old[len(line) + 1:]
    elif b"\n" + line + b"\n" in old:
        new = old.replace(b"\n" + line + b"\n", b"\n", 1)
    else:
        return False
    backup = conf.with_name(conf.name + BACKUP_SUFFIX)
    has_backup = os.path.lexists(backup)
    if not new and not has_backup:
        conf.unlink()  # we created it: uninstall leaves no file behind
        return True
    _write_atomic(conf, new, like=conf)
    if has_backup and backup.read_bytes() == new:
        backup.unlink()
    return True


def _write_atomic(path: Path, data: bytes, *, like: Path | None) -> None:
    """Replace `path` with `data` in one rename, keeping `like`'s mode and owner."""
    temp = path.with_name(f".{path.name}.npq-{secrets.token_hex(4)}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            if like is not None:
                st = like.stat()
                os.fchmod(fd, st.st_mode & 0o7777)
                os.fchown(fd, st.st_uid, st.st_gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc}; it is unchanged") from exc
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
