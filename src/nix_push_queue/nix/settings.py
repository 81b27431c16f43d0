"""Nix's effective settings on this host (`nix config show --json`, `show-config` before 2.20),
for what other parts need to know of it: which post-build-hook nix-daemon runs."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from ..errors import NpqError
from . import dialect, pathinfo

TIMEOUT = 60.0


class SettingsError(NpqError):
    """Nix's settings could not be read."""


def read_settings(env: Mapping[str, str], nix_bin_dir: str | None) -> dict[str, object]:
    try:
        argv = dialect.detect(nix_bin_dir, env).config_show_json()
        proc = subprocess.run(argv, env=dict(env), capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired, dialect.DialectError) as exc:
        raise SettingsError(f"cannot run nix to read its settings: {exc}") from exc
    if proc.returncode != 0:
        raise SettingsError(f"`nix config show` exited {proc.returncode}: "
                            f"{proc.stderr.strip()[-300:]}")
    try:
        return pathinfo.parse_settings(proc.stdout)
    except pathinfo.NixOutputError as exc:
        raise SettingsError(f"cannot read Nix's settings: {exc}") from exc


def post_build_hook(env: Mapping[str, str], nix_bin_dir: str | None) -> str | None:
    """The post-build-hook nix.conf sets (what nix-daemon runs as root), or None."""
    value = str(read_settings(env, nix_bin_dir).get("post-build-hook", "")).strip()
    return value or None
