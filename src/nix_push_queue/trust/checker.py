"""Apply the rules along paths: a file, every directory above it (symlinks followed), and
for programs what they run in turn. Collects findings, counts what was checked, notes what
could not be."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from . import rules, walk
from .rules import Finding, Owners, Rule


@dataclass
class Checker:
    owners: Owners
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: set[tuple[str, str]] = field(default_factory=set)  # (path, rule name)

    def one(self, path: str, rule: Rule, what: str) -> None:
        """One existing file or directory, by one rule (each pair once)."""
        key = (path, rule.__name__)
        if key in self.checked:
            return
        self.checked.add(key)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.notes.append(f"{path} ({what}): cannot be checked: {exc.strerror}")
            return
        if stat.S_ISLNK(st.st_mode):  # a link's own mode means nothing: follow it
            self.checked.discard(key)
            self.path(path, rule, what)
            return
        found = rule(path, st, self.owners, what)
        if found is not None:
            self.findings.append(found)

    def path(self, path: str, rule: Rule, what: str, parents: Rule = rules.code,
             *, missing_ok: bool = True) -> str | None:
        """`path` by `rule` and every directory walked to reach it by `parents`; the real
        file, or None when it does not exist (then its nearest ancestors were checked)."""
        try:
            chain = walk.resolve(path)
        except OSError as exc:
            self.notes.append(f"{path} ({what}): cannot be followed: {exc}")
            return None
        # Below a directory only root may enter (systemd's /var/lib/private, 0700), no other
        # user reaches the daemon's files, whoever owns them: a stopped DynamicUser service's
        # state is left to an unused uid there. Secret keys are held to their own rule still.
        shielded = False
        for directory in chain.dirs:
            if not shielded:
                self.one(directory, parents, f"a directory above {what} {path}")
                shielded = parents is rules.daemon_dir and _root_only(directory)
        if shielded and rule is rules.daemon_dir:
            return chain.target
        if chain.target is None:
            if not missing_ok:
                self.findings.append(Finding(path, what, "-", "-", "does not exist on this host",
                                             "install it first (root will run it), or pass "
                                             "--allow-untrusted-hook when generating for "
                                             "another host", "hook"))
            return None
        self.one(chain.target, rule, what if chain.target == path
                 else f"{what} {path}, through a symlink")
        return chain.target

    def tree(self, top: str, what: str) -> None:
        """A package directory and everything in it (symlinks in it followed)."""
        real = self.path(top, rules.code, what)
        if real is None or not os.path.isdir(real):
            return
        for directory, subdirs, files in os.walk(real):
            for name in (*subdirs, *files):
                self.one(os.path.join(directory, name), rules.code, f"a file of {what} {top}")

    def entries(self, top: str, what: str) -> None:
        """An import directory and its direct entries (.pth files run at start-up; packages)."""
        real = self.path(top, rules.code, what)
        if real is None or not os.path.isdir(real):
            return
        try:
            names = sorted(os.listdir(real))
        except OSError as exc:
            self.notes.append(f"{real}: cannot be listed: {exc.strerror}")
            return
        for name in names:
            self.one(os.path.join(real, name), rules.code, f"an entry of {what} {top}")

    @property
    def count(self) -> int:
        return len({p for p, _ in self.checked})


def _root_only(directory: str) -> bool:
    """Whether `directory` is root's and closed to everyone else (no group or other x)."""
    try:
        st = os.stat(directory)
    except OSError:
        return False
    return st.st_uid == 0 and not st.st_mode & 0o011
