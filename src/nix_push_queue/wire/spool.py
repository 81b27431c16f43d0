"""The on-disk spool: where the hook leaves paths when the daemon does not answer.

Each hook run writes its own file, `<spool_dir>/<pid>-<time_ns>-<random>.spool`, one store path
per line: written under a hidden temp name, fsync'd, renamed, directory fsync'd. Writers never
share a file, so no locking; a reader sees whole files or none. The daemon ingests with
`ingest_spool`: enqueue (commit) first, unlink after, so a crash in between only re-enqueues
(enqueue is idempotent). Torn or corrupt lines are reported and skipped; the valid lines of
the same file are kept.

An entry that cannot be read (a directory, symlink, FIFO or device named `*.spool`, a file
the daemon may not read, one over MAX_FILE bytes) or that holds invalid lines is moved aside
into `<spool_dir>/quarantine/` with one log line, and ingestion goes on with the next: one bad
entry must not hold back every file after it. If even the move fails, the entry is skipped
until the daemon restarts. Nothing is ever opened but regular files (no FIFO to block on).

Writing is on the hook's path, so this module imports only os, errno and time at load; the
reader imports what it needs when called.
"""

from __future__ import annotations

import errno
import os
import time

TYPE_CHECKING = False  # mypy reads this name as true; at run time `typing` stays unloaded
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Collection, Iterator, Sequence

    from ..errors import SpoolError

SUFFIX = ".spool"
QUARANTINE = "quarantine"
MAX_FILE = 64 << 20  # bytes; the hook writes a few KiB, `push` of a large closure a few MiB
MAX_LOGGED = 10  # invalid lines logged per file; the rest are counted
_TMP_PREFIX = "."
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
    tmp = os.path.join(directory, _TMP_PREFIX + name + _TMP_SUFFIX)
    data = "".join(p + "\n" for p in paths).encode("utf-8")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
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
        raise _spool_error(directory, "cannot write a spool file", exc) from exc
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


def _spool_error(directory: str, what: str, exc: OSError) -> SpoolError:
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
        raise _spool_error(directory, "cannot list the spool", exc) from exc
    found = []
    for entry in entries:
        if entry.name.endswith(SUFFIX) and not entry.name.startswith(_TMP_PREFIX):
            try:
                found.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.path))
            except FileNotFoundError:
                continue  # ingested by someone else meanwhile
    return [path for _, path in sorted(found)]


def parse_spool(data: bytes, store_dir: str | None) -> tuple[list[str], list[str]]:
    """(valid paths, bad lines) of one file's content. A last line without its newline is
    torn and counts as bad; with `store_dir`, lines that are not store paths are bad."""
    from ..nix import storepath

    lines = data.split(b"\n")
    tail = lines.pop()
    good: list[str] = []
    bad: list[str] = []
    for raw in lines:
        if not raw:
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(raw.decode("utf-8", "backslashreplace"))
            continue
        ok = (storepath.is_store_path(line, store_dir) if store_dir is not None
              else line.startswith("/") and "\0" not in line)
        (good if ok else bad).append(line)
    if tail:
        bad.append(tail.decode("utf-8", "backslashreplace"))
    return good, bad


def read_entry(file: str) -> tuple[bytes | None, str]:
    """(content, "") of a regular spool file, or (None, why it cannot be read). Raises
    FileNotFoundError when it vanished, SpoolError for process-wide trouble (out of file
    descriptors or memory) that the next attempt may not have."""
    try:
        why = _not_readable(os.lstat(file))
        if why:
            return None, why
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        return None, _unreadable(file, exc)
    try:
        why = _not_readable(os.fstat(fd))  # what was opened, not what lstat saw
        data = None if why else _read_all(fd)
    except OSError as exc:
        return None, _unreadable(file, exc)
    finally:
        os.close(fd)
    return (data, "") if data is not None else (None, why or f"larger than {MAX_FILE} bytes")


def _not_readable(st: os.stat_result) -> str:
    import stat

    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({_kind(st.st_mode)})"
    if st.st_size > MAX_FILE:
        return f"{st.st_size} bytes, larger than {MAX_FILE}"
    return ""


def _read_all(fd: int) -> bytes | None:
    """The file's bytes, or None past MAX_FILE (it grew after fstat)."""
    chunks = []
    size = 0
    while chunk := os.read(fd, 1 << 20):
        size += len(chunk)
        if size > MAX_FILE:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _unreadable(file: str, exc: OSError) -> str:
    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        raise _spool_error(os.path.dirname(file), f"cannot read {file}", exc) from exc
    code = errno.errorcode.get(exc.errno or 0, "?")
    return f"cannot be read: {exc.strerror or exc} [{code}]"


def _kind(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return f"mode {mode:o}"


def quarantine(spool_dir: str | os.PathLike[str], file: str) -> str:
    """Move `file` (any kind of entry) into `<spool_dir>/quarantine/`; returns where it went.
    Raises OSError when it cannot be moved."""
    qdir = os.path.join(os.fspath(spool_dir), QUARANTINE)
    os.makedirs(qdir, mode=0o700, exist_ok=True)
    dest = os.path.join(qdir, os.path.basename(file))
    if os.path.lexists(dest):
        dest += f".{time.time_ns()}"
    os.rename(file, dest)
    return dest


def count_spool(spool_dir: str | os.PathLike[str], skipped: Collection[str] = ()
                ) -> tuple[int, int]:
    """(entries waiting to be ingested, entries set aside): the quarantine directory's
    entries plus those in `skipped` (could not even be moved). SpoolError when the spool
    cannot be listed."""
    directory = os.fspath(spool_dir)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0, 0
    except OSError as exc:
        raise _spool_error(directory, "cannot list the spool", exc) from exc
    waiting = stuck = 0
    for name in names:
        if name.endswith(SUFFIX) and not name.startswith(_TMP_PREFIX):
            if os.path.join(directory, name) in skipped:
                stuck += 1
            else:
                waiting += 1
    try:
        aside = len(os.listdir(os.path.join(directory, QUARANTINE)))
    except (FileNotFoundError, NotADirectoryError):
        aside = 0
    except OSError as exc:
        raise _spool_error(directory, "cannot list the quarantine", exc) from exc
    return waiting, aside + stuck


def read_spool_files(spool_dir: str | os.PathLike[str], store_dir: str | None = None,
                     ) -> Iterator[tuple[str, list[str], list[str]]]:
    """Yield (file, valid paths, bad lines) for every readable spool file, oldest first."""
    for file in spool_files(spool_dir):
        try:
            data, _ = read_entry(file)
        except FileNotFoundError:
            continue
        if data is not None:
            yield (file, *parse_spool(data, store_dir))


def ingest_spool(spool_dir: str | os.PathLike[str], enqueue: Callable[[list[str]], object],
                 store_dir: str | None = None, skipped: set[str] | None = None,
                 ) -> tuple[int, int, int, int]:
    """Hand every spool file's paths to `enqueue` (which must commit before it returns),
    then delete the file, or quarantine it when it holds invalid lines or cannot be read.
    Returns (files, paths, bad lines, entries quarantined). If `enqueue` raises, that file
    and the rest stay for the next attempt. `skipped`: entries that could not be moved
    aside; they are added to it and passed over from then on."""
    import logging

    log = logging.getLogger(__name__)
    skipped = set() if skipped is None else skipped
    files = paths = bad_lines = aside = 0
    for file in spool_files(spool_dir):
        if file in skipped:
            continue
        try:
            data, why = read_entry(file)
        except FileNotFoundError:
            continue
        if data is None:
            aside += _set_aside(log, spool_dir, file, why, skipped)
            continue
        good, bad = parse_spool(data, store_dir)
        for line in bad[:MAX_LOGGED]:
            log.warning("spool %s: skipping invalid line %r", file, line[:300])
        if good:
            enqueue(good)
        if bad:
            aside += _set_aside(log, spool_dir, file, f"{len(bad)} invalid line(s), "
                                f"{len(good)} valid path(s) queued", skipped)
        else:
            try:
                os.unlink(file)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _spool_error(os.fspath(spool_dir), f"cannot delete {file}", exc) from exc
        files, paths, bad_lines = files + 1, paths + len(good), bad_lines + len(bad)
    return files, paths, bad_lines, aside


def _set_aside(log: logging.Logger, spool_dir: str | os.PathLike[str], file: str, why: str,
               skipped: set[str]) -> int:
    try:
        dest = quarantine(spool_dir, file)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        skipped.add(file)
        log.error("spool %s: %s; cannot move it aside (%s): passing over it until the "
                  "daemon restarts", file, why, exc.strerror or exc)
        return 1
    log.warning("spool %s: %s; moved to %s", file, why, dest)
    return 1
