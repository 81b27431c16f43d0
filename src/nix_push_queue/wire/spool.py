"""The on-disk spool: where the hook leaves paths when the daemon does not answer.

Each hook run writes its own file, `<spool_dir>/<pid>-<time_ns>-<random>.spool`, one store path
per line: written under a hidden temp name, fsync'd, renamed, directory fsync'd. Writers never
share a file, so no locking; a reader sees whole files or none. The daemon ingests with
`spool_reader.ingest_spool`; this module holds the writer and the listing both sides use.

Writing is on the hook's path, so this module imports only os, errno and time at load; the
reader imports what it needs when called.
"""

from __future__ import annotations

import errno
import os
import time

TYPE_CHECKING = False  # mypy reads this name as true; at run time `typing` stays unloaded
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..errors import SpoolError

SUFFIX = ".spool"
TMP_PREFIX = "."
_TMP_SUFFIX = ".tmp"


def write_spool(spool_dir: str | os.PathLike[str], paths: Sequence[str]) -> str:
    """Durably write `paths` as a new spool file; returns its path.

    Creates the directory (mode 0700) if missing. The file is mode 0600; when running as root
    in a directory owned by someone else (the daemon's user), it is given to that owner so the
    daemon can read and delete it. Raises SpoolError (disk full, read-only, permissions).
    """
    directory = os.fspath(spool_dir)
    for path in paths:
        if "\n" in path or "\0" in path or not path:
            raise ValueError(f"not writing {path!r} to the spool: one path per line")
    name = f"{os.getpid()}-{time.time_ns()}-{os.urandom(4).hex()}"
    final = os.path.join(directory, name + SUFFIX)
    tmp = os.path.join(directory, TMP_PREFIX + name + _TMP_SUFFIX)
    data = "".join(p + "\n" for p in paths).encode("utf-8")
    try:
        if not os.path.isdir(directory):
            # A directory made here must survive a power cut too, or the fsync'd file
            # below vanishes with it: fsync the parent of what was created (rare: once).
            os.makedirs(directory, mode=0o700, exist_ok=True)
            _fsync_dir(os.path.dirname(os.path.abspath(directory)))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                     0o600)
        try:
            _give_to_dir_owner(fd, directory)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        _fsync_dir(directory)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise spool_error(directory, "cannot write a spool file", exc) from exc
    return final


def _give_to_dir_owner(fd: int, directory: str) -> None:
    if os.geteuid() != 0:
        return
    st = os.stat(directory)
    if (st.st_uid, st.st_gid) != (0, 0):
        os.fchown(fd, st.st_uid, st.st_gid)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:  # noqa: SIM105 - contextlib would be one more import on the hook's path
        os.unlink(path)
    except OSError:
        pass


def spool_error(directory: str, what: str, exc: OSError) -> SpoolError:
    from ..errors import SpoolError

    code = errno.errorcode.get(exc.errno or 0, "?")
    hint = {
        errno.ENOSPC: " (the disk is full)",
        errno.EDQUOT: " (disk quota exceeded)",
        errno.EROFS: " (the file system is read-only)",
        errno.EACCES: f" (permission denied for uid {os.geteuid()})",
    }.get(exc.errno or 0, "")
    return SpoolError(directory, f"{what}: {exc.strerror or exc} [{code}]{hint}")


# -- the daemon's side -----------------------------------------------------------------------


def spool_files(spool_dir: str | os.PathLike[str]) -> list[str]:
    """Complete spool files, oldest first (names start with the writer's pid, so sort by
    mtime). A missing directory has none."""
    directory = os.fspath(spool_dir)
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise spool_error(directory, "cannot list the spool", exc) from exc
    found = []
    for entry in entries:
        if entry.name.endswith(SUFFIX) and not entry.name.startswith(TMP_PREFIX):
            try:
                found.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.path))
            except FileNotFoundError:
                continue  # ingested by someone else meanwhile
    return [path for _, path in sorted(found)]
