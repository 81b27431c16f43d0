"""The trust check: refuse to make root run, or the daemon trust, anything another user can
change (docs/security.md).

Covers what root runs as the post-build-hook (the wrapper, the program it execs, `#!`
interpreters through symlinks, the directories the hook's Python imports the package and
its dependencies from, every directory above each: hook.py) and the files the daemon trusts
(its config, secret keys, spool and state directories). The rules are in rules.py, one
function each. Used by `generate`, `validate`, `verify`, the daemon at start and `status`.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass

from ..config.model import Config
from . import hook, rules
from .checker import Checker
from .rules import Finding, Owners

__all__ = ["Finding", "Owners", "Report", "Subjects", "check", "owners_for"]


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]  # what could not be checked, and why
    checked: int  # files and directories looked at

    @property
    def ok(self) -> bool:
        return not self.findings

    def only(self, role: rules.Role) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.role == role)

    def summary(self) -> str:
        if self.ok:
            return f"trust: ok ({self.checked} files and directories checked)"
        return (f"trust: {len(self.findings)} problem(s) in {self.checked} files and "
                "directories checked")

    def lines(self) -> list[str]:
        return [self.summary(), *(f"trust: {f}" for f in self.findings),
                *(f"trust: note: {n}" for n in self.notes)]


@dataclass(frozen=True)
class Subjects:
    """What to check. `wrapper`: the installed post-build-hook (as nix.conf names it);
    `wrapper_text`: a wrapper about to be written (generate), checked for what it runs;
    `command`: one program as a wrapper would exec it;
    `config_file`: the file the daemon (or this command) reads; `config`: its keys and
    queue directories."""

    config: Config | None = None
    config_file: str | None = None
    wrapper: str | None = None
    command: Sequence[str] | None = None
    wrapper_dir: str | None = None  # where a wrapper is about to be written
    wrapper_text: str | None = None  # a wrapper about to be written: what it will run


def owners_for(config: Config | None, daemon_uid: int | None = None) -> Owners:
    """Root, the store's owner, and the daemon's user: `daemon_uid` when the daemon asks
    for itself, else `service.user` (or any DynamicUser uid when there is none)."""
    store_dir = config.nix.store_dir if config is not None else "/nix/store"
    try:
        store_uid: int | None = os.stat(store_dir).st_uid
    except OSError:
        store_uid = None
    uids: set[int] = set()
    gids: set[int] = set()
    dynamic = False
    if daemon_uid is not None:
        uids.add(daemon_uid)
        gids.add(os.getegid())
    elif config is not None and config.service.user is not None:
        try:
            entry = pwd.getpwnam(config.service.user)
            uids.add(entry.pw_uid)
            gids.add(entry.pw_gid)
        except KeyError:
            pass  # not created yet: root only
    elif config is not None:
        dynamic = True
    if config is not None and config.service.group is not None:
        with contextlib.suppress(KeyError):
            gids.add(grp.getgrnam(config.service.group).gr_gid)
    return Owners(store_dir.rstrip("/") or "/", store_uid, frozenset(uids), frozenset(gids),
                  dynamic)


def check(subjects: Subjects, owners: Owners) -> Report:
    checker = Checker(owners)
    if subjects.wrapper is not None:
        hook.check_wrapper(checker, subjects.wrapper)
    if subjects.wrapper_dir is not None:
        checker.path(subjects.wrapper_dir, rules.code, "the directory of the post-build-hook")
    if subjects.wrapper_text is not None:
        hook.check_wrapper_text(checker, subjects.wrapper_text)
    if subjects.command is not None:
        hook.check_program(checker, list(subjects.command))
    if subjects.config_file is not None:
        path = os.path.abspath(subjects.config_file)
        checker.path(path, rules.config_file, "the config file", rules.config_file)
    if subjects.config is not None:
        _daemon_files(checker, subjects.config)
    return Report(tuple(checker.findings), tuple(checker.notes), checker.count)


def secret_files(config: Config) -> list[tuple[str, str]]:
    """(path, what) of every secret the daemon or Nix reads."""
    out = []
    for target in config.targets:
        for path, what in ((target.secret_key_file, "secret key"),
                           (target.ssh_key_file, "ssh key"),
                           (target.credentials_file, "credentials file")):
            if path:
                out.append((path, f"target {target.name}'s {what}"))
    out.extend((p, "a secret key in nix.secret_key_files") for p in config.nix.secret_key_files)
    return out


def _daemon_files(checker: Checker, config: Config) -> None:
    for path, what in secret_files(config):
        checker.path(path, rules.secret_key, what, rules.daemon_dir)
    for path, what in ((config.queue.spool_dir, "the spool directory"),
                       (config.queue.state_dir, "the state directory")):
        checker.path(path, rules.daemon_dir, what, rules.daemon_dir)
