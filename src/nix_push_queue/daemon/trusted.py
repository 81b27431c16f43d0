"""The trust check at the daemon's start (docs/security.md): what root runs as the
post-build-hook nix.conf names, and the daemon's own config, keys and queue directories.

It runs once, off the event loop, after the daemon is ready (a slow interpreter probe must
not delay the first hook's answer). The result is logged and `status` shows it; the daemon
keeps working either way, since refusing to upload would lose builds, not protect them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from .. import trust
from ..config.model import Config
from ..nix import settings

log = logging.getLogger(__name__)


class TrustState:
    def __init__(self, config: Config, config_file: str | None,
                 env: Mapping[str, str]) -> None:
        self._config = config
        self._config_file = config_file
        self._env = env
        self.lines: tuple[str, ...] | None = None  # None: not checked yet

    def run(self) -> None:
        notes: list[str] = []
        try:
            wrapper = settings.post_build_hook(self._env, self._config.nix.nix_bin_dir)
        except settings.SettingsError as exc:
            wrapper = None
            notes.append(f"the post-build-hook is not checked: {exc}")
        else:
            if wrapper is None:
                notes.append("nix.conf sets no post-build-hook")
        report = trust.check(trust.Subjects(config=self._config, config_file=self._config_file,
                                            wrapper=wrapper),
                             trust.owners_for(self._config, daemon_uid=os.geteuid()))
        lines = [*report.lines(), *(f"trust: note: {n}" for n in notes)]
        level = logging.INFO if report.ok else logging.ERROR
        for line in lines:
            log.log(level if not line.startswith("trust: note") else logging.WARNING, "%s", line)
        self.lines = tuple(lines)
