"""Wake the daemon when a spool entry is renamed into the spool directory: inotify through
ctypes (no dependency), so an entry the hook wrote is queued within milliseconds.

The hook no longer talks to the daemon (its /bin/sh hot path writes a spool entry), so this
is how its paths reach the queue. Where inotify is missing (not Linux, no libc symbol, out of
watches) `DirWatch.open` returns None and the daemon's one-second poll of the directory
stays the only way; the poll also stays beside the watch, for a directory that was removed
and made again (the watch follows the old inode).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# <sys/inotify.h>, the same on every Linux architecture
IN_MOVED_TO = 0x80
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_MASK = IN_MOVED_TO  # both writers rename a finished entry in; a temp file is no news
_READ = 64 * 1024


class DirWatch:
    """An inotify watch of one directory; `changed` is set whenever an entry arrives."""

    def __init__(self, fd: int, directory: str) -> None:
        self._fd = fd
        self.directory = directory
        self.changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def open(cls, directory: str) -> DirWatch | None:
        """Watch `directory` from the running loop; None where inotify cannot (logged)."""
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            if libc.inotify_add_watch(fd, os.fsencode(directory), _MASK) < 0:
                err = ctypes.get_errno()
                os.close(fd)
                raise OSError(err, os.strerror(err))
        except (OSError, AttributeError) as exc:
            log.info("no inotify watch of %s (%s): the spool is polled every second",
                     directory, exc)
            return None
        watch = cls(fd, directory)
        watch._loop = asyncio.get_running_loop()
        watch._loop.add_reader(fd, watch._readable)
        return watch

    def _readable(self) -> None:
        try:
            while os.read(self._fd, _READ):
                pass
        except BlockingIOError:
            pass
        except OSError as exc:  # a broken watch: the poll goes on alone
            log.warning("inotify watch of %s failed: %s", self.directory, exc)
            self.close()
        self.changed.set()

    async def wait(self, timeout: float) -> bool:
        """True when an entry arrived within `timeout` seconds (the event is then cleared)."""
        try:
            await asyncio.wait_for(self.changed.wait(), timeout)
        except TimeoutError:
            return False
        self.changed.clear()
        return True

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
