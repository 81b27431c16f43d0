"""The project installed in a root by that root's own Python, editable from the checkout.

Each root keeps one venv per pyproject.toml (and extras) under /opt/npq-venvs/<hash>, so
checkouts with different pyproject.toml files (a branch, an uncommitted edit) can run in the
same root at once without reinstalling under each other. A venv counts only once its stamp
is written; venvs unused for a day are removed.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from tests.vm.cache import Cache

from .chroot import SRC, run_in_root
from .roots import RootError

VENVS = "/opt/npq-venvs"
# bench: the benchmark smoke test (tests/integration/test_bench_smoke.py) draws plots.
EXTRAS = "test,bench"
REPO = Path(__file__).resolve().parents[2]
STAMP = ".npq-stamp"
UNUSED = 86400.0


def venv_key(repo: Path = REPO) -> str:
    h = hashlib.sha256((repo / "pyproject.toml").read_bytes())
    h.update(EXTRAS.encode())
    return h.hexdigest()[:12]


def ensure_venv(root: Path, cache_dir: Path, repo: Path = REPO) -> str:
    """The venv (a path inside the root) for this checkout's pyproject.toml, made if needed."""
    venv = f"{VENVS}/{venv_key(repo)}"
    host_dir = root / venv.lstrip("/")
    stamp = host_dir / STAMP
    with Cache(cache_dir).lock(f"venv-{root.name}"):
        if not stamp.exists():
            _install(root, venv, repo)
            stamp.write_text(f"{repo / 'pyproject.toml'} [{EXTRAS}]\n")
        stamp.touch()
        _prune(host_dir.parent, keep=host_dir)
    return venv


def _install(root: Path, venv: str, repo: Path) -> None:
    script = (f"rm -rf {venv} && python3 -m venv {venv} "
              f"&& {venv}/bin/pip install -q --upgrade pip "
              f"&& {venv}/bin/pip install -q -e '{SRC}[{EXTRAS}]'")
    proc = run_in_root(root, ["/bin/sh", "-c", script], binds={SRC: repo},
                       timeout=1800, capture=True)
    if proc.returncode != 0:
        raise RootError(["pip", "install", "-e", f"{SRC}[{EXTRAS}]"], proc.returncode,
                        proc.stdout + proc.stderr)


def _prune(venvs: Path, keep: Path) -> None:
    now = time.time()
    for old in venvs.iterdir():
        stamp = old / STAMP
        used = stamp.stat().st_mtime if stamp.exists() else 0.0
        if old != keep and now - used > UNUSED:
            shutil.rmtree(old, ignore_errors=True)
