"""Which store paths a build produced, from what post-build-hook was handed.

OUT_PATHS when Nix filled it; else (Nix 2.8.0 leaves it empty) the output paths written in the
.drv file, else `nix-store --query --outputs`. When none of that names them (a floating
content-addressed derivation on Nix 2.8, a .drv gone, nix-store failing), the derivation
itself is queued as `DRV^*` for the daemon to resolve once the build is registered
(daemon/resolver.py): nothing is dropped without a trace. Imports as hook.py does.
"""

from __future__ import annotations

import os
import time

from ..nix import installable, storepath
from .hooksettings import Settings, log

TYPE_CHECKING = False  # mypy reads this name as true; at run time `typing` stays unloaded
if TYPE_CHECKING:
    from collections.abc import Mapping

_DRV_READ = 1 << 16  # the outputs come first in a .drv; they fit in far less
_DRV_START = "Derive(["  # ATerm: Derive([("out","/nix/store/...-x","",""),...],...)

def drv_outputs(drv_path: str) -> list[str] | None:
    """Output paths written in the .drv file; None when it cannot tell (unreadable, another
    format, or content-addressed outputs whose paths are not known in advance)."""
    try:
        with open(drv_path, "rb") as f:
            text = f.read(_DRV_READ).decode("utf-8", "replace")
    except OSError:
        return None
    paths = _aterm_output_paths(text)
    return paths if paths and all(paths) else None


def _aterm_output_paths(text: str) -> list[str] | None:
    """The second field of each ("name","path","algo","hash") in Derive([...]; None if the
    text is not that shape or a field holds an escape. Plain string scanning: `re` costs the
    hook more to import than this costs to run."""
    if not text.startswith(_DRV_START):
        return None
    pos, paths = len(_DRV_START), []
    while text.startswith("(", pos):
        fields = []
        for closing in (",", ",", ",", ")"):
            if not text.startswith('"', pos + 1):
                return None
            end = text.find('"', pos + 2)
            if end < 0 or "\\" in text[pos + 2:end] or not text.startswith(closing, end + 1):
                return None
            fields.append(text[pos + 2:end])
            pos = end + 1
        paths.append(fields[1])
        pos += 1
        if text.startswith(",", pos):
            pos += 1
    return paths if text.startswith("]", pos) else None


def query_outputs(drv_path: str, nix_bin_dir: str | None, deadline: float,
                  env: Mapping[str, str]) -> list[str]:
    """`nix-store --query --outputs DRV`, killed at the deadline."""
    import shutil
    import subprocess

    nix_store = (os.path.join(nix_bin_dir, "nix-store") if nix_bin_dir
                 else shutil.which("nix-store", path=env.get("PATH", os.defpath)))
    if not nix_store:
        raise OSError("nix-store not found on PATH")
    proc = subprocess.run([nix_store, "--query", "--outputs", drv_path], env=dict(env),
                          capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                          timeout=max(0.05, deadline - time.monotonic()))
    if proc.returncode != 0:
        raise OSError(f"nix-store exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return proc.stdout.split()


def build_outputs(out_paths: str, drv_path: str, settings: Settings, deadline: float,
                  env: Mapping[str, str]) -> list[str]:
    """What to queue for this build: its valid output paths (invalid ones are logged and
    dropped), then `DRV^*` when DRV_PATH is a derivation, so the daemon uploads the outputs
    with their realisations (or resolves them, when they could not be named here)."""
    drv = None
    if drv_path:
        if storepath.is_derivation(drv_path, settings.store_dir):
            drv = drv_path
        else:
            log(f"ignoring DRV_PATH {drv_path[:300]!r}: not a derivation in "
                f"{settings.store_dir}")
    candidates = out_paths.split()
    if not candidates and drv is not None:
        candidates = drv_outputs(drv) or []
        if not candidates:
            try:
                candidates = query_outputs(drv, settings.nix_bin_dir, deadline, env)
            except Exception as exc:
                log(f"cannot name the outputs of {drv} here ({exc}); queueing the "
                    "derivation for the daemon to resolve")
    valid = []
    for path in candidates:
        why = storepath.problem(path, settings.store_dir)
        if why is None:
            valid.append(path)
        else:
            log(f"refusing {path[:300]!r}: {why}")
    return [*dict.fromkeys(valid), *([installable.canonical(drv)] if drv else [])]
