"""Boot a Debian test VM under QEMU and drive it with the NixOS test driver's machine API.

The guest runs systemd as PID 1 on its own kernel. Commands go over a virtio-serial port to a
root "backdoor" service (guest/backdoor.py), which returns exit status, stdout and stderr, so
the guest needs no network. `crash()` is a hard power-off: QEMU is SIGKILLed, so whatever the
guest had not flushed to its disk is lost; `start()` boots the same disk again.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from nix_push_queue.errors import NpqError

from .spec import VmSpec, qemu_argv

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300
BOOT_TIMEOUT = 600  # TCG on a busy 2-core machine; a quiet boot takes well under a minute


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: a killed test run takes its VMs with it."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class MachineError(NpqError):
    """A VM did not do what a test asked (command failed, timed out, machine died)."""

    def __init__(self, machine: str, what: str, console_tail: str = "") -> None:
        self.machine = machine
        self.what = what
        tail = f"\n--- last console lines ---\n{console_tail}" if console_tail else ""
        super().__init__(f"{machine}: {what}{tail}")


class Machine:
    """One VM. Method names and semantics follow the NixOS test driver's `Machine`."""

    def __init__(self, spec: VmSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.console_log = spec.state_dir / f"{spec.name}-console.log"
        self.qemu_log = spec.state_dir / f"{spec.name}-qemu.log"
        self.boot_seconds: list[float] = []
        self.boot_panics: list[str] = []
        self._console_mark = 0
        self._sock_dir = Path(tempfile.mkdtemp(prefix="npqvm-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: socket.socket | None = None
        self._buf = b""
        self._next_id = 0
        self.boot_id = ""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Boot; a boot whose kernel panicked is tried once more (see _boot_panicked)."""
        if self.is_up():
            return
        started = time.monotonic()
        try:
            self._boot(started + BOOT_TIMEOUT)
        except MachineError as exc:
            panic = self._boot_panicked()
            if not panic:
                raise
            log.warning("%s: the guest kernel panicked while booting (%s); booting again: %s",
                        self.name, panic, exc.what)
            self.boot_panics.append(panic)
            self._kill()
            self._boot(time.monotonic() + BOOT_TIMEOUT)
        self.boot_seconds.append(time.monotonic() - started)
        log.info("%s: up after %.1f s (boot id %s)", self.name, self.boot_seconds[-1],
                 self.boot_id)

    def _boot(self, deadline: float) -> None:
        backdoor = self._sock_dir / "backdoor.sock"
        backdoor.unlink(missing_ok=True)
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        self._console_mark = _size(self.console_log)
        argv = qemu_argv(self.spec, self.console_log, backdoor)
        log.info("%s: starting %s", self.name, shlex.join(argv))
        # QEMU's own messages go to a file: a pipe nobody reads could fill and stall it.
        with open(self.qemu_log, "ab") as err:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=err,
                                          preexec_fn=_die_with_parent)
        self._conn = self._connect(backdoor, deadline)
        self.boot_id = self._await_backdoor(deadline)

    def _boot_panicked(self) -> str:
        """The panic line if the boot just tried died in a kernel panic, else "".

        Under TCG the emulated CPU, not the guest, sometimes breaks a boot: one CI boot in
        dozens oopsed at 1.8 s in the kernel's own code patching (int3 in sched_clock_tick on
        a secondary CPU) and panicked. Nothing of ours has run that early, so the boot is
        retried once and the panic kept in `boot_panics` for the run's timings; a second
        panic fails the test."""
        try:
            with open(self.console_log, "rb") as f:
                f.seek(self._console_mark)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        for line in text.splitlines():
            if "Kernel panic" in line:
                return line.strip()
        return ""

    def is_up(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def crash(self) -> None:
        """Hard power-off: kill QEMU with SIGKILL; the guest gets no chance to flush."""
        log.info("%s: crash (power cut)", self.name)
        self._kill()

    def shutdown(self) -> None:
        """Clean power-off through systemd; waits for QEMU to exit."""
        if not self.is_up():
            return
        self._send({"id": self._take_id(), "cmd": "systemctl poweroff", "timeout": 60})
        try:
            if self._proc is not None:
                self._proc.wait(timeout=BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("%s: did not power off in %d s; killing", self.name, BOOT_TIMEOUT)
        self._kill()

    def release(self) -> None:
        """Teardown: make sure QEMU is gone and the socket directory removed."""
        self._kill()
        with contextlib.suppress(OSError):
            for p in self._sock_dir.iterdir():
                p.unlink()
            self._sock_dir.rmdir()

    # -- commands --------------------------------------------------------------------------

    def execute(self, command: str, timeout: int | None = None) -> tuple[int, str]:
        """Run `command` with bash as root; return (exit status, stdout). Stderr is logged."""
        rc, out, _ = self._run(command, timeout)
        return rc, out

    def succeed(self, *commands: str, timeout: int | None = None) -> str:
        output = ""
        for command in commands:
            rc, out, err = self._run(command, timeout)
            if rc != 0:
                raise MachineError(self.name, f"command failed (exit {rc}): {command}\n"
                                   f"{out}{err}")
            output += out
        return output

    def fail(self, *commands: str, timeout: int | None = None) -> str:
        output = ""
        for command in commands:
            rc, out = self.execute(command, timeout)
            if rc == 0:
                raise MachineError(self.name, f"command succeeded unexpectedly: {command}")
            output += out
        return output

    def wait_until_succeeds(self, command: str, timeout: int = 900) -> str:
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.execute(command, timeout=max(1, int(deadline - time.monotonic())))
            if rc == 0:
                return out
            if time.monotonic() > deadline:
                raise MachineError(self.name, f"still failing after {timeout} s: {command}")
            time.sleep(1)

    def wait_until_fails(self, command: str, timeout: int = 900) -> str:
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.execute(command, timeout=max(1, int(deadline - time.monotonic())))
            if rc != 0:
                return out
            if time.monotonic() > deadline:
                raise MachineError(self.name, f"still succeeding after {timeout} s: {command}")
            time.sleep(1)

    def get_unit_info(self, unit: str) -> dict[str, str]:
        out = self.succeed(f"systemctl show --no-pager {shlex.quote(unit)}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for_unit(self, unit: str, timeout: int = 900) -> None:
        """Wait until `unit` is active; fail at once if it failed, as the NixOS driver does."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.get_unit_info(unit)
            state = info.get("ActiveState", "")
            if state == "active":
                return
            if state == "failed":
                raise MachineError(self.name, f"unit {unit} failed:\n" + self._journal(unit))
            if time.monotonic() > deadline:
                raise MachineError(self.name, f"unit {unit} not active after {timeout} s "
                                   f"(state {state}):\n" + self._journal(unit))
            time.sleep(1)

    def copy_from_host_text(self, text: str, guest_path: str, mode: str = "0644") -> None:
        data = base64.b64encode(text.encode()).decode()
        q = shlex.quote(guest_path)
        self.succeed(f"install -D -m {mode} /dev/null {q} && echo {data} | base64 -d > {q}")

    # -- internals -------------------------------------------------------------------------

    def _run(self, command: str, timeout: int | None) -> tuple[int, str, str]:
        limit = DEFAULT_TIMEOUT if timeout is None else timeout
        rid = self._take_id()
        self._send({"id": rid, "cmd": command, "timeout": limit})
        # The guest enforces `limit`; the margin covers a loaded host and the reply's way back.
        reply = self._receive(rid, time.monotonic() + limit + 60, command)
        out = base64.b64decode(reply["out"]).decode("utf-8", "replace")
        err = base64.b64decode(reply["err"]).decode("utf-8", "replace")
        if err.strip():
            log.info("%s: %s (stderr):\n%s", self.name, command[:160], err.rstrip())
        if reply["timed_out"]:
            raise MachineError(self.name, f"command timed out after {limit} s: {command}\n{err}")
        return int(reply["rc"]), out, err

    def _journal(self, unit: str) -> str:
        _rc, out = self.execute(f"journalctl --no-pager -n 40 -u {shlex.quote(unit)}", 60)
        return out

    def _connect(self, path: Path, deadline: float) -> socket.socket:
        while True:
            self._check_alive("starting")
            if path.exists():
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    conn.connect(str(path))
                    return conn
                except OSError:
                    conn.close()
            if time.monotonic() > deadline:
                raise MachineError(self.name, "QEMU never opened the backdoor socket")
            time.sleep(0.05)

    def _await_backdoor(self, deadline: float) -> str:
        self._buf = b""
        while True:
            rid = self._take_id()
            self._send({"id": rid, "ping": True})
            try:
                reply = self._receive(rid, min(deadline, time.monotonic() + 5), "boot")
                return str(reply["boot_id"])
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise MachineError(self.name, f"no backdoor after {BOOT_TIMEOUT} s",
                                       self.console_tail()) from None

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _send(self, msg: dict[str, Any]) -> None:
        if self._conn is None:
            raise MachineError(self.name, "machine is not running")
        try:
            self._conn.sendall((json.dumps(msg) + "\n").encode())
        except OSError as exc:
            self._check_alive("send")
            raise MachineError(self.name, f"backdoor unusable: {exc}") from exc

    def _receive(self, rid: int, deadline: float, what: str) -> dict[str, Any]:
        """Read replies until the one for `rid`; TimeoutError past the deadline."""
        conn = self._conn
        if conn is None:
            raise MachineError(self.name, f"machine is not running: {what}")
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                with contextlib.suppress(ValueError):
                    reply: dict[str, Any] = json.loads(line)
                    if reply.get("id") == rid:
                        return reply
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if what == "boot":
                    raise TimeoutError(what)
                raise MachineError(self.name, f"no answer in time for: {what}",
                                   self.console_tail())
            conn.settimeout(min(remaining, 1.0))
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                self._check_alive(what)
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self._check_alive(what)
                raise MachineError(self.name, f"backdoor closed during: {what}",
                                   self.console_tail())
            self._buf += chunk

    def _check_alive(self, what: str) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            err = _tail(self.qemu_log, 10)
            code = self._proc.returncode
            self._proc = None
            raise MachineError(self.name, f"QEMU exited ({code}) during: {what}\n{err}",
                               self.console_tail())

    def _kill(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)

    def console_tail(self, lines: int = 30) -> str:
        return _tail(self.console_log, lines)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
