"""Run the `nix-push-queue` console script's entry point as its launcher does.

Where the launcher file lives depends on the installation: beside the interpreter in a
virtualenv, in $out/bin behind a wrapper in the Nix build (whose interpreter is python3's
own, with the package on PYTHONPATH). The entry point itself is in the installed metadata in
both, so the tests run that, with the body every launcher has (pip's, installer's), minus the
launcher's own imports: what is measured is what the package loads.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points

import pytest

SCRIPT = "nix-push-queue"


def command(*args: str, python_flags: tuple[str, ...] = ()) -> list[str]:
    """argv running `nix-push-queue ARGS` through the installed entry point."""
    found = entry_points(group="console_scripts", name=SCRIPT)
    if not found:
        pytest.skip(f"no `{SCRIPT}` console script in the installed metadata: the package is "
                    "not installed (pip install -e . or the Nix build installs it)")
    (entry,) = found
    name = entry.attr.split(".")[0]
    body = f"import sys\nfrom {entry.module} import {name}\nsys.exit({entry.attr}())\n"
    return [sys.executable, *python_flags, "-c", body, *args]


def environment(**extra: str) -> dict[str, str]:
    """A minimal environment that still finds the package where the caller found it."""
    env = {"PATH": "/usr/bin:/bin", **extra}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env
