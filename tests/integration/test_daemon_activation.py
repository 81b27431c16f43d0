"""systemd integration with real tools (socket activation through systemd-socket-activate,
sd_notify), the control verbs as a user runs them, and the metrics endpoint."""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from nix_push_queue.nix.isolated import text_derivation
from tests.fixtures.daemon import DaemonHarness

pytestmark = pytest.mark.integration

Factory = Callable[..., DaemonHarness]


def test_socket_activation(npq_daemon_factory: Factory) -> None:
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.fail("systemd-socket-activate missing; scripts/bootstrap.sh installs systemd")
    # No hook: the generated one writes the spool and never connects (the service starts at
    # boot); a client such as `push` is what activates the socket.
    d = npq_daemon_factory(hook=False)
    # systemd-socket-activate binds the socket, waits for the first connection, then execs
    # the daemon with LISTEN_FDS=1 / LISTEN_PID; only variables named with -E pass through.
    # systemd 258+ also sends READY=1 itself when NOTIFY_SOCKET is in its own environment
    # (measured: 262 in Debian sid), so the activator gets it only as the daemon's variable.
    passed = [arg for name in d.env() for arg in ("-E", name)]
    hide_notify = ('a=$1; shift; exec env -u NOTIFY_SOCKET "$a" '
                   '-E "NOTIFY_SOCKET=$NOTIFY_SOCKET" "$@"')
    d.start(argv_prefix=["/bin/sh", "-c", hide_notify, "sh", activate, "-l", d.socket_path,
                         *passed], wait_ready=False)
    deadline = time.monotonic() + 30
    while not os.path.exists(d.socket_path):
        assert time.monotonic() < deadline and d.running, d.log_text()
        time.sleep(0.02)
    assert "READY=1" not in d.read_notifications()  # nothing runs before a client comes
    path = d.build("activated", uuid.uuid4().hex)
    d.cli("push", str(path))  # its connection starts the daemon
    d.wait_ready()
    assert not list(d.spool_dir.glob("*.spool")), "push spooled instead of being served"
    d.wait_drained(timeout=120)
    d.assert_signed(path)
    assert "using the socket passed by systemd (fd 3)" in d.log_text()
    assert d.stop() == 0
    assert "STOPPING=1" in d.read_notifications()
    # The socket belongs to systemd: the daemon must not remove it.
    assert os.path.exists(d.socket_path)


def test_notify_status_and_own_socket_cleanup(npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(queue={"socket_mode": "0600"})
    d.start()
    assert os.stat(d.socket_path).st_mode & 0o777 == 0o600
    messages = d.read_notifications()
    assert any(m.startswith("STATUS=0 pending") for m in messages), messages
    assert d.stop() == 0
    assert "STOPPING=1" in d.read_notifications()
    assert not os.path.exists(d.socket_path)


def test_push_closure_wait_status_and_spool_fallback(npq_daemon_factory: Factory) -> None:
    d = npq_daemon_factory(hook=False)
    nonce = uuid.uuid4().hex
    dep_expr = text_derivation("pushed-dep", f"dep {nonce}")
    top = d.build("pushed-top", f"top {nonce}", deps=(f"({dep_expr})",))
    dep = d.nix.build_expr(dep_expr)[0]
    link = d.root / "result"
    link.symlink_to(top)

    # daemon down: push falls back to the spool, with a warning, and succeeds
    down = d.cli("push", str(link))
    assert "spooled 1 path(s)" in down.stdout
    assert "no answer from the daemon" in down.stderr
    assert len(list(d.spool_dir.glob("*.spool"))) == 1

    d.start()
    pushed = d.cli("push", "--closure", "--wait", "--timeout", "120", str(link))
    assert "2 path(s) on every target (local)" in pushed.stdout
    d.assert_signed(top)
    d.assert_signed(dep)
    d.assert_substitutable(top, dep)
    text = d.cli("status").stdout
    assert text.splitlines()[0].split() == ["TARGET", "PENDING", "UPLOADING", "DONE", "DEAD",
                                            "SKIPPED", "GONE", "RELEASED", "OLDEST", "BYTES",
                                            "RATE"]
    assert text.splitlines()[1].split()[:5] == ["local", "0", "0", "2", "0"]
    bad = d.cli("push", "/etc/passwd", check=False)
    assert bad.returncode != 0 and "not inside the store" in bad.stderr


def test_wait_times_out_when_the_queue_cannot_drain(npq_daemon_factory: Factory,
                                                    tmp_path: Path) -> None:
    d = npq_daemon_factory(hook=False, queue={"retry": {"initial_delay": 30, "max_delay": 60}})
    path = d.build("stuck", uuid.uuid4().hex)
    d.cache_dir.rmdir()
    d.cache_dir.write_text("a file where the cache directory should be")
    d.start()
    d.cli("push", str(path))
    proc = d.cli("wait", "--timeout", "2", check=False)
    assert proc.returncode == 9, proc.stderr  # WaitTimeout
    assert "still pending" in proc.stderr


def test_metrics_endpoint(npq_daemon_factory: Factory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    d = npq_daemon_factory(metrics={"listen": f"127.0.0.1:{port}"})
    d.start()
    d.build("measured", uuid.uuid4().hex)
    d.wait_drained(timeout=120)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        body = reply.read().decode()
    assert 'npq_queue_rows{state="done",target="local"} 1.0' in body
    assert 'npq_uploads_total{result="ok",target="local"} 1.0' in body
    # The hook writes the spool; the daemon takes it from there (dirwatch.py).
    spooled = re.search(r'^npq_enqueued_paths_total\{source="spool"\} (\S+)$', body, re.M)
    assert spooled is not None and float(spooled.group(1)) >= 1, body
    assert 'npq_upload_duration_seconds_count{target="local"} 1.0' in body
    assert str(d.secret_key) not in body
    nbytes = re.search(r'^npq_uploaded_bytes_total\{target="local"\} (\S+)$', body, re.M)
    assert nbytes is not None and float(nbytes.group(1)) > 0
