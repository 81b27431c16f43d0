"""The project installed in a root by that root's own Python, editable from the checkout.

The venv lives inside the root (/opt/npq-venv) and is redone only when pyproject.toml or the
extras change: a stamp inside the venv records what it was made from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.vm.cache import Cache

from .chroot import SRC, run_in_root
from .roots import RootError

VENV = "/opt/npq-venv"
# bench: the benchmark smoke test (tests/integration/test_bench_smoke.py) draws plots.
EXTRAS = "test,bench"
REPO = Path(__file__).resolve().parents[2]


def venv_stamp(repo: Path = REPO) -> str:
    digest = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()
    return f"{digest}-[{EXTRAS}]\n"


def ensure_venv(root: Path, cache_dir: Path, repo: Path = REPO) -> str:
    """Install the project into the root's venv unless its stamp is current; returns the venv."""
    stamp = root / VENV.lstrip("/") / ".npq-stamp"
    want = venv_stamp(repo)
    with Cache(cache_dir).lock(f"venv-{root.name}"):
        if stamp.exists() and stamp.read_text() == want:
            return VENV
        script = (f"rm -rf {VENV} && python3 -m venv {VENV} "
                  f"&& {VENV}/bin/pip install -q --upgrade pip "
                  f"&& {VENV}/bin/pip install -q -e '{SRC}[{EXTRAS}]'")
        proc = run_in_root(root, ["/bin/sh", "-c", script], binds={SRC: repo},
                           timeout=1800, capture=True)
        if proc.returncode != 0:
            raise RootError(["pip", "install", "-e", f"{SRC}[{EXTRAS}]"], proc.returncode,
                            proc.stdout + proc.stderr)
        stamp.write_text(want)
    return VENV
