"""Where a Python interpreter imports from, asked of that interpreter (not this process: the
hook's interpreter may be another venv, another Python, or see another sys.path).

It runs with an empty environment, as nix-daemon's hook mostly does (no PYTHONPATH), and
with the flags of the `#!` line. It is only run once its own file and directories passed
the check: an untrusted interpreter is reported, never run.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

TIMEOUT = 30.0
PACKAGE = "nix_push_queue"

# Prints sys.path (without the -c entry) and the directories of nix_push_queue and of every
# package its distribution requires (editable installs map those through finders, not
# sys.path, hence find_spec).
_PROBE = r"""
import importlib.metadata as md, importlib.util, json, re, sys
names = {%(package)r}
try:
    wanted = {re.split(r"[ ;<>=!~\[(]", r, 1)[0].lower().replace("_", "-")
              for r in md.requires(%(dist)r) or () if "extra ==" not in r}
    for top, dists in md.packages_distributions().items():
        if any(d.lower().replace("_", "-") in wanted for d in dists):
            names.add(top)
except md.PackageNotFoundError:
    pass
found = []
for name in sorted(names):
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        continue
    if spec is None:
        continue
    if spec.submodule_search_locations:
        found.extend(spec.submodule_search_locations)
    elif spec.origin and spec.origin.startswith("/"):
        found.append(spec.origin)
print(json.dumps({"path": [p for p in sys.path[1:] if p], "packages": found}))
"""


@dataclass(frozen=True)
class ImportDirs:
    path: tuple[str, ...]  # sys.path entries (directories or zip files; some may not exist)
    packages: tuple[str, ...]  # the package's and its dependencies' directories (or files)


class ProbeError(Exception):
    """The interpreter could not be asked (it failed, or printed something else)."""


def import_dirs(interpreter: Sequence[str], package: str = PACKAGE,
                dist: str = "nix-push-queue") -> ImportDirs:
    """`interpreter`: the program and its `#!` flags (one string, as the kernel passes it)."""
    argv = [interpreter[0], *interpreter[1].split()[:1]] if len(interpreter) > 1 \
        else [interpreter[0]]
    code = _PROBE % {"package": package, "dist": dist}
    try:
        proc = subprocess.run([*argv, "-c", code], env={}, capture_output=True, text=True,
                              timeout=TIMEOUT, check=False, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeError(f"{argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ProbeError(f"{argv[0]} exited {proc.returncode}: {tail[0]}")
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        return ImportDirs(tuple(str(p) for p in data["path"]),
                          tuple(str(p) for p in data["packages"]))
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ProbeError(f"{argv[0]}: unexpected output {proc.stdout[:200]!r}") from exc
