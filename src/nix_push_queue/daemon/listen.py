"""The daemon's listening socket: inherited from systemd (socket activation: an already
listening fd) or bound here (a stale socket file is replaced, the parent directory created,
mode and group set, and nobody can connect before they are).
"""

from __future__ import annotations

import contextlib
import errno
import grp
import logging
import os
import socket
import stat

from ..errors import DaemonError

log = logging.getLogger(__name__)


def inherited_socket(fd: int) -> socket.socket:
    """Adopt a listening unix stream socket passed by systemd (LISTEN_FDS)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise DaemonError(f"inherited fd {fd} is not a socket: {exc.strerror}") from exc
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise DaemonError(f"inherited fd {fd} is not a unix stream socket; "
                          "the .socket unit needs ListenStream=<path>")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.listen(socket.SOMAXCONN)
    os.set_inheritable(fd, False)  # `nix copy` children must not hold the hook's socket
    return sock


def bind_socket(path: str, mode: int, group: str | None) -> socket.socket:
    """Bind and listen on `path`: create its directory, replace a stale socket (refuse when
    another daemon still answers on it), set permission bits and group."""
    parent = os.path.dirname(path) or "."
    os.makedirs(parent, mode=0o755, exist_ok=True)
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bound with no permissions for others, then opened up: nobody can connect in between.
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise DaemonError(f"cannot bind {path}: {exc.strerror}") from exc
    finally:
        os.umask(old_umask)
    try:
        if group is not None:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        os.chmod(path, mode)
    except (KeyError, OSError) as exc:
        sock.close()
        raise DaemonError(f"cannot set group {group!r} / mode {mode:o} on {path}: {exc}"
                          ) from exc
    sock.listen(socket.SOMAXCONN)
    return sock


def _remove_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise DaemonError(f"{path} exists and is not a socket; remove it or change "
                          "queue.socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise DaemonError(f"cannot probe {path}: {exc.strerror}") from exc
    else:
        raise DaemonError(f"another daemon is listening on {path}")
    finally:
        probe.close()
    log.info("removing stale socket %s", path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def socket_inode(path: str) -> int:
    return os.lstat(path).st_ino


def unlink_socket(path: str, inode: int) -> None:
    """Remove the socket file we bound (`inode` taken right after binding), unless another
    process has replaced it meanwhile."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
