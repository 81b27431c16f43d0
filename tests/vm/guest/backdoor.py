"""The guest side of the test harness's command channel (runs as root inside the VM).

Like the NixOS test driver's backdoor: a root shell reachable from the host, here over a
virtio-serial port, so tests need no network in the guest. One JSON object per line each way:
request `{"id": n, "cmd": "...", "timeout": s}`, reply `{"id": n, "rc": int, "out": b64,
"err": b64, "timed_out": bool}`. `{"id": n, "ping": true}` is answered with the boot id, which
is how the host learns that the guest is up (and that a reboot really happened).

Stdlib only: it runs on the guest's /usr/bin/python3, outside any virtualenv.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


def run(cmd: str, timeout: float) -> dict[str, Any]:
    # A new session per command, so a timeout kills everything the command started.
    proc = subprocess.Popen(
        ["/bin/bash", "-c", cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=GUEST_ENV, cwd="/root", start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return {
        "rc": proc.returncode, "timed_out": timed_out,
        "out": base64.b64encode(out).decode(), "err": base64.b64encode(err).decode(),
    }


def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
        return f.read().strip()


def serve(fd: int) -> None:
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            # The host side is not connected; virtio ports report EOF until it is.
            os.close(fd)
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                req = json.loads(line)
            except ValueError:
                continue  # noise from an earlier connection
            if req.get("ping"):
                reply: dict[str, Any] = {"boot_id": boot_id()}
            else:
                reply = run(str(req["cmd"]), float(req["timeout"]))
            reply["id"] = req.get("id")
            data = (json.dumps(reply) + "\n").encode()
            while data:
                data = data[os.write(fd, data):]


def main() -> int:
    port = sys.argv[1]
    while True:
        serve(os.open(port, os.O_RDWR))
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
