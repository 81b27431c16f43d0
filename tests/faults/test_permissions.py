"""Who may talk to the daemon and read its state: the socket admits its owner and the
configured group (socket_mode/socket_group) and refuses everyone else at connect; the state
directory, spool and database are private. Checked with throwaway system users, by mode bits
and by real attempts made as those users (setpriv), not by reasoning about the bits alone.
"""

from __future__ import annotations

import grp
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import DaemonHarness
from tests.fixtures.faults import User, needs_root, throwaway_group, throwaway_user

from .audit import add_paths, audit, check, db_rows, row
from .figures import FIGURES

pytestmark = [pytest.mark.integration, needs_root]

SRC = str(Path(__file__).resolve().parents[2] / "src")
# The system interpreter: the test venv lives under /root, which other users cannot enter.
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable

PROBE = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("refused", e.errno, e.strerror)
    raise SystemExit(0)
s.sendall(b'{"v":1,"op":"ping"}\n')
print("reply", s.recv(4096).decode().strip())
"""

HOOK = ("import sys; sys.path.insert(0, sys.argv[1]); from nix_push_queue.cli import main; "
        "raise SystemExit(main(sys.argv[2:]))")


@pytest.fixture
def open_base() -> Iterator[Path]:
    """A directory every user may traverse, so only the daemon's own modes protect it."""
    base = Path(tempfile.mkdtemp(prefix="npqf-perm-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _connect_as(user: User, sock: str) -> str:
    proc = user.run([PYTHON, "-c", PROBE, sock])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _hook_as(user: User, d: DaemonHarness, paths: list[str]) -> Any:
    q = d.config["queue"]
    return user.run(["env", f"OUT_PATHS={' '.join(paths)}", "DRV_PATH=",
                     PYTHON, "-c", HOOK, SRC, "hook", "--socket", q["socket"],
                     "--spool-dir", q["spool_dir"], "--store-dir", d.config["nix"]["store_dir"],
                     "--timeout", "10", "--no-gc-roots"])


def test_socket_admits_only_its_group_and_state_is_private(
        npq_daemon_factory: Any, open_base: Path, tmp_path: Path) -> None:
    with throwaway_group() as group, \
            throwaway_user(groups=[group]) as member, throwaway_user() as outsider:
        sock = str(open_base / "run" / "hook.sock")
        started = time.monotonic()
        d: DaemonHarness = npq_daemon_factory(hook=False, queue={
            "socket": sock, "socket_mode": "0660", "socket_group": group,
            "state_dir": str(open_base / "state"),
            "spool_dir": str(open_base / "state" / "spool")})
        d.start()
        (open_base / "run").chmod(0o755)  # as a RuntimeDirectory would be

        st = os.stat(sock)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == grp.getgrnam(group).gr_gid

        # The group member gets answers and its hook is acknowledged (nothing spooled).
        assert _connect_as(member, sock).startswith('reply {"v":1,"ok":true'), member
        paths = add_paths(d.nix, tmp_path, 2)
        hook = _hook_as(member, d, paths)
        assert hook.returncode == 0 and hook.stderr == "", hook.stderr
        assert {r.path for r in db_rows(d.state_dir)} == set(paths)

        # Anyone else is refused at connect; its hook still exits 0 and says why.
        refused = _connect_as(outsider, sock)
        assert refused.startswith(f"refused {13}"), refused  # EACCES
        others = add_paths(d.nix, tmp_path, 1)
        hook = _hook_as(outsider, d, others)
        assert hook.returncode == 0
        assert "Permission denied" in hook.stderr and "NOT queued" in hook.stderr, hook.stderr
        assert others[0] not in {r.path for r in db_rows(d.state_dir)}

        _assert_private(d, outsider)
        _assert_private(d, member)  # the socket's group grants the socket, nothing more

        d.wait_drained(timeout=300)
        outcome = audit(d, paths)
        check(outcome)
        FIGURES.record(row("permissions: outsider refused", outcome, faults=2,
                           enqueued=len(paths), seconds=time.monotonic() - started))


def _assert_private(d: DaemonHarness, user: User) -> None:
    state, spool_dir = d.state_dir, d.spool_dir
    db = state / "queue.sqlite"
    for directory in (state, spool_dir):
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        assert mode & 0o077 == 0, f"{directory} is mode {mode:o}"
    for file in (db, state / "queue.sqlite-wal"):
        if file.exists():
            mode = stat.S_IMODE(os.stat(file).st_mode)
            assert mode & 0o007 == 0, f"{file} is mode {mode:o}, readable by others"
    # Real attempts, as the user: every one must fail with a permission error.
    for argv in (["cat", str(db)], ["ls", str(state)], ["ls", str(spool_dir)],
                 ["touch", str(spool_dir / "x.spool")], ["cat", str(state / "queue.sqlite-wal")]):
        proc = user.run(argv)
        assert proc.returncode != 0, f"{user.name} could run {argv}: {proc.stdout[:200]}"
        assert "Permission denied" in proc.stderr, proc.stderr
