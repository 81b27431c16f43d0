"""The daemon's side of the spool (wire/spool.py writes it): read, ingest, set aside.

`ingest_spool`: enqueue (commit) first, unlink after, so a crash in between only re-enqueues
(enqueue is idempotent). Torn or corrupt lines are reported and skipped; the valid lines of
the same file are kept.

An entry that cannot be read (a directory, symlink, FIFO or device named `*.spool`, a file
the daemon may not read, one over MAX_FILE bytes) or that holds invalid lines is moved aside
into `<spool_dir>/quarantine/` with one log line, and ingestion goes on with the next: one bad
entry must not hold back every file after it. If even the move fails, the entry is skipped
until the daemon restarts. Nothing is ever opened but regular files (no FIFO to block on).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Collection, Iterator

from ..nix import installable
from .spool import SUFFIX, TMP_PREFIX, spool_error, spool_files

log = logging.getLogger(__name__)

QUARANTINE = "quarantine"
MAX_FILE = 64 << 20  # bytes; the hook writes a few KiB, `push` of a large closure a few MiB
MAX_LOGGED = 10  # invalid lines logged per file; the rest are counted


def parse_spool(data: bytes, store_dir: str | None) -> tuple[list[str], list[str]]:
    """(valid entries, bad lines) of one file's content. A last line without its newline is
    torn and counts as bad; with `store_dir`, lines that are neither store paths nor
    derivation installables (`DRV^*`, nix/installable.py) are bad. Installables come back in
    the queue's spelling."""
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
        ok = (installable.problem(line, store_dir) is None if store_dir is not None
              else line.startswith("/") and "\0" not in line)
        if ok:
            good.append(installable.normalize(line))
        else:
            bad.append(line)
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
        raise spool_error(os.path.dirname(file), f"cannot read {file}", exc) from exc
    code = errno.errorcode.get(exc.errno or 0, "?")
    return f"cannot be read: {exc.strerror or exc} [{code}]"


def _kind(mode: int) -> str:
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
        raise spool_error(directory, "cannot list the spool", exc) from exc
    waiting = stuck = 0
    for name in names:
        if name.endswith(SUFFIX) and not name.startswith(TMP_PREFIX):
            if os.path.join(directory, name) in skipped:
                stuck += 1
            else:
                waiting += 1
    try:
        aside = len(os.listdir(os.path.join(directory, QUARANTINE)))
    except (FileNotFoundError, NotADirectoryError):
        aside = 0
    except OSError as exc:
        raise spool_error(directory, "cannot list the quarantine", exc) from exc
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
            aside += _set_aside(spool_dir, file, why, skipped)
            continue
        good, bad = parse_spool(data, store_dir)
        for line in bad[:MAX_LOGGED]:
            log.warning("spool %s: skipping invalid line %r", file, line[:300])
        if good:
            enqueue(good)
        if bad:
            aside += _set_aside(spool_dir, file, f"{len(bad)} invalid line(s), "
                                f"{len(good)} valid path(s) queued", skipped)
        else:
            aside += _remove(spool_dir, file, len(good), skipped)
        files, paths, bad_lines = files + 1, paths + len(good), bad_lines + len(bad)
    return files, paths, bad_lines, aside


def _remove(spool_dir: str | os.PathLike[str], file: str, queued: int,
            skipped: set[str]) -> int:
    """Delete an ingested file. One that cannot be deleted (immutable, a read-only mount)
    is moved aside, else passed over by name: its paths are queued already, and raising
    here would hold back every later file at each poll (issue 22)."""
    try:
        os.unlink(file)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        return _set_aside(spool_dir, file, f"cannot be deleted ({exc.strerror or exc}); its "
                          f"{queued} path(s) are queued", skipped)
    return 0


def _set_aside(spool_dir: str | os.PathLike[str], file: str, why: str,
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
