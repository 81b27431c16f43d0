"""systemd's notify protocol (READY=1, STATUS=..., STOPPING=1), without libsystemd."""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)


def sd_notify(address: str | None, message: str) -> bool:
    """systemd's notify protocol: one datagram to $NOTIFY_SOCKET ('@' = abstract namespace).
    Returns False when there is no socket or it cannot be reached (never fatal)."""
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never block the event loop on the reader: once its queue is full (10 datagrams
            # by default) a blocking send waits for it, and the daemon stops answering.
            sock.setblocking(False)
            sock.connect(target)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", address, exc.strerror)
        return False
    return True
