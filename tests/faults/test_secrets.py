"""Signing keys come from systemd's credentials directory and go nowhere else: not into
logs, `status` (text or JSON), metrics, error messages, dead letters, the cache or the Nix
store. The keys here exist ONLY in $CREDENTIALS_DIRECTORY (the configured paths do not
exist), so a signed narinfo proves the daemon read them from there.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures._processes import free_port
from tests.fixtures.daemon import DaemonHarness

from .audit import add_paths, audit, cached_paths, db_rows, row, run_hook
from .figures import FIGURES

pytestmark = pytest.mark.integration


def _grep_tree(root: Path, needles: list[bytes]) -> list[str]:
    """Files under `root` holding any needle (binary-safe; symlinks not followed)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {n[:12]!r}..." for n in needles if n in data]
    return hits


def test_keys_from_credentials_never_leak(npq_daemon_factory: Any, tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    probe = npq_daemon_factory(hook=False)  # only for its key pair and Nix
    good_secret = probe.secret_key.read_text().strip()
    # A key the daemon cannot use: well-formed but corrupt, with a findable marker inside.
    marker = secrets.token_hex(16)
    bad_secret = "bad-key-1:" + base64.b64encode(marker.encode() * 3).decode()  # 96 bytes
    (creds / "local-secret-key").write_text(good_secret + "\n")
    (creds / "badkey-secret-key").write_text(bad_secret + "\n")
    (creds / "down-secret-key").write_text(good_secret + "\n")
    for f in creds.iterdir():
        f.chmod(0o400)
    missing = str(tmp_path / "not-here.sec")  # configured, absent: credentials must win
    (tmp_path / "bad-cache").mkdir()
    port = free_port()  # nothing listens there: uploads fail with a connection error
    d: DaemonHarness = npq_daemon_factory(
        hook=False,
        targets=[
            {"name": "local", "url": probe.cache_url, "secret_key_file": missing,
             "public_key": probe.public_key},
            {"name": "badkey", "url": f"file://{tmp_path / 'bad-cache'}",
             "secret_key_file": missing},
            {"name": "down", "url": f"http://127.0.0.1:{free_port()}",
             "secret_key_file": missing},
        ],
        queue={"retry": {"max_attempts": 2, "initial_delay": 0.2, "max_delay": 0.5}},
        metrics={"listen": f"127.0.0.1:{port}"},
    )
    d.start(env={"CREDENTIALS_DIRECTORY": str(creds)})

    paths = add_paths(d.nix, tmp_path, 3)
    started = time.monotonic()
    hook = run_hook(d, paths)
    assert hook.returncode == 0 and not hook.stderr, hook.stderr
    _wait_settled(d, 3 * len(paths))

    # The key was read from the credentials directory: narinfos are signed with it.
    assert cached_paths(probe.cache_dir, probe.public_key.split(":")[0]) >= set(paths)
    status = d.status()
    assert status["badkey"]["dead"] == len(paths) and status["badkey"]["last_error"]
    assert status["down"]["dead"] == len(paths) and status["down"]["last_error"]

    outputs = {
        "daemon log": d.log_text(),
        "hook stderr": hook.stderr,
        "status": d.cli("status").stdout + d.cli("status").stderr,
        "status --json": d.cli("status", "--json").stdout,
        "wait": _both(d.cli("wait", "--timeout", "5", check=False)),
        "retry": _both(d.cli("retry", check=False)),
        "metrics": urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                          timeout=30).read().decode(),
        "dead letters": "\n".join(str(r.last_error) for r in db_rows(d.state_dir)),
        "drop": _both(d.cli("drop", check=False)),
    }
    needles = [_material(good_secret), _material(bad_secret), marker]
    for name, text in outputs.items():
        for needle in needles:
            assert needle not in text, f"secret material in {name}"
    # Nor in the files the daemon and Nix wrote: cache, queue, Nix store and state.
    raw = [n.encode() for n in needles]
    leaks = (_grep_tree(probe.cache_dir, raw) + _grep_tree(tmp_path / "bad-cache", raw)
             + _grep_tree(d.state_dir, raw) + _grep_tree(d.nix.store_dir, raw)
             + _grep_tree(d.nix.root / "var", raw))
    assert not leaks, leaks
    # The errors still say what is wrong, without the key.
    assert "redacted" in outputs["daemon log"] or "secret-key" not in outputs["daemon log"]
    outcome = audit(d, paths, cache_dir=probe.cache_dir, public_key=probe.public_key)
    assert not outcome.lost
    print("measured: last errors:", {t: s["last_error"] for t, s in status.items()})
    FIGURES.record(row("secrets: 3 targets, 2 failing", outcome, faults=2,
                       enqueued=len(paths), seconds=time.monotonic() - started))


def _material(secret_line: str) -> str:
    """The secret half of a `name:base64` key line (the name is public)."""
    return secret_line.split(":", 1)[1]


def _both(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def _wait_settled(d: DaemonHarness, rows: int, timeout: float = 240) -> None:
    """Until every row is done or dead (`wait` would fail on the dead letters)."""
    from tests.fixtures.faults import wait_for

    def settled() -> bool:
        states = [r.state for r in db_rows(d.state_dir)]
        return len(states) == rows and all(s in ("done", "dead") for s in states)

    wait_for("every row done or dead", settled, timeout=timeout, interval=0.5)
