"""The rules, one function each, over one file's stat result: who may own it and who may
write (or, for a secret key, read) it. Pure: the walk over the filesystem is in walk.py.

Root runs the post-build-hook after every build, so whoever can change a file it executes
or imports, or a directory above one, can run code as root (sshd's StrictModes reasoning).
The daemon signs with the secret keys and uploads what the spool says, so the same goes,
less sharply, for its config, keys and queue directories.
"""

from __future__ import annotations

import grp
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["hook", "daemon"]

# systemd's DynamicUser= picks uids from this range (systemd's DYNAMIC_UID_MIN/MAX).
DYNAMIC_UIDS = range(61184, 65520)

INSTALL_AS_ROOT = ("install nix-push-queue as root into a root-owned directory, e.g. "
                   "`python3 -m venv /opt/nix-push-queue` (docs/non-nixos.md), and generate "
                   "again with --executable pointing there")


class StatLike(Protocol):
    @property
    def st_mode(self) -> int: ...
    @property
    def st_uid(self) -> int: ...
    @property
    def st_gid(self) -> int: ...


@dataclass(frozen=True)
class Owners:
    """Who may own what. Root always; under the Nix store, the store's owner (everything
    there is immutable once registered); the daemon's user for its keys and queue."""

    store_dir: str = "/nix/store"
    store_uid: int | None = None
    daemon_uids: frozenset[int] = frozenset()
    daemon_gids: frozenset[int] = frozenset()
    dynamic_user: bool = False  # the daemon runs as a systemd DynamicUser

    def in_store(self, path: str) -> bool:
        store = self.store_dir.rstrip("/")
        return path == store or path.startswith(store + "/")

    def trusted_for_code(self, path: str, uid: int) -> bool:
        return uid == 0 or (self.store_uid is not None and uid == self.store_uid
                            and self.in_store(path))

    def daemon_owner(self, uid: int) -> bool:
        return uid == 0 or uid in self.daemon_uids or (self.dynamic_user and uid in DYNAMIC_UIDS)

    def daemon_group(self, gid: int) -> bool:
        return gid == 0 or gid in self.daemon_gids


@dataclass(frozen=True)
class Finding:
    """One file that fails a rule: what it is, its owner and mode, what is wrong, what to do."""

    path: str
    what: str
    owner: str
    mode: str
    problem: str
    fix: str
    role: Role

    def __str__(self) -> str:
        found = f"owner {self.owner}, mode {self.mode}: " if self.mode != "-" else ""
        return f"{self.path} ({self.what}): {found}{self.problem}; {self.fix}"


def user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def group_name(gid: int) -> str:
    try:
        return f"group {grp.getgrgid(gid).gr_name}"
    except KeyError:
        return f"group {gid}"


def _finding(path: str, st: StatLike, what: str, problem: str, fix: str, *,
             role: Role) -> Finding:
    return Finding(path, what, f"{user_name(st.st_uid)}, {group_name(st.st_gid)}",
                   f"{stat.S_IMODE(st.st_mode):04o}", problem, fix, role)


def _sticky_root_dir(st: StatLike) -> bool:
    """/tmp-like: others may add entries but not replace root's (the sticky bit)."""
    return stat.S_ISDIR(st.st_mode) and bool(st.st_mode & stat.S_ISVTX) and st.st_uid == 0


def _writers(st: StatLike) -> str | None:
    if st.st_mode & stat.S_IWOTH:
        return "others"
    if st.st_mode & stat.S_IWGRP:
        return group_name(st.st_gid)
    return None


Rule = Callable[[str, StatLike, Owners, str], "Finding | None"]


def code(path: str, st: StatLike, owners: Owners, what: str) -> Finding | None:
    """A file root executes or imports, or a directory above one: owned by root (or the
    store's owner, in the store), writable by nobody else; root's sticky dirs excepted."""
    if not owners.trusted_for_code(path, st.st_uid):
        whom = "root or the Nix store's owner" if owners.in_store(path) else "root"
        return _finding(path, st, what, f"not owned by {whom}, and root runs what it holds "
                        "after every build", INSTALL_AS_ROOT, role="hook")
    writers = _writers(st)
    # The store itself is root:nixbld 1775 (multi-user) or its owner's (single-user).
    store_sticky = (path == owners.store_dir and stat.S_ISDIR(st.st_mode)
                    and bool(st.st_mode & stat.S_ISVTX))
    if writers is not None and not _sticky_root_dir(st) and not store_sticky:
        return _finding(path, st, what, f"writable by {writers}, who could change what root "
                        "runs after every build", f"`chmod go-w {path}` (or install afresh "
                        "as root into a root-owned directory such as /opt: docs/non-nixos.md)",
                        role="hook")
    return None


def config_file(path: str, st: StatLike, owners: Owners, what: str) -> Finding | None:
    """The daemon's config names the keys and where to upload: root's, like code."""
    found = code(path, st, owners, what)
    if found is None:
        return None
    fix = (f"`chown root {path}`" if "owned" in found.problem else f"`chmod go-w {path}`")
    return Finding(found.path, found.what, found.owner, found.mode,
                   found.problem.split(",")[0] + ", who could choose what the daemon signs "
                   "and where it uploads", fix, "daemon")


def secret_key(path: str, st: StatLike, owners: Owners, what: str) -> Finding | None:
    """Readable by root and the daemon only (ssh treats private keys so)."""
    if not owners.daemon_owner(st.st_uid):
        return _finding(path, st, what, "not owned by root or the daemon's user",
                        f"`chown root {path}` (systemd hands it to the daemon with "
                        "LoadCredential)", role="daemon")
    if st.st_mode & stat.S_IRWXO:
        return _finding(path, st, what, "readable by others, who could sign anything as "
                        "your cache", f"`chmod 0600 {path}`, and make a new key pair if "
                        "untrusted users could read it", role="daemon")
    if st.st_mode & stat.S_IRWXG and not owners.daemon_group(st.st_gid):
        return _finding(path, st, what, f"open to {group_name(st.st_gid)}",
                        f"`chmod 0600 {path}`", role="daemon")
    if st.st_mode & stat.S_IWGRP:
        return _finding(path, st, what, f"writable by {group_name(st.st_gid)}",
                        f"`chmod g-w {path}`", role="daemon")
    return None


def daemon_dir(path: str, st: StatLike, owners: Owners, what: str) -> Finding | None:
    """The spool and state directories (a spool entry is an instruction to upload) and the
    directories above the daemon's files: root's or the daemon's, not writable by others."""
    if not owners.daemon_owner(st.st_uid):
        return _finding(path, st, what, "not owned by root or the daemon's user, who could "
                        "put instructions to upload in the queue", f"`chown root {path}` "
                        "(or the daemon's user for its own spool and state)", role="daemon")
    writers = _writers(st)
    if writers == "others" and not _sticky_root_dir(st):
        return _finding(path, st, what, "writable by others, who could put instructions to "
                        "upload in the queue", f"`chmod o-w {path}`", role="daemon")
    if writers not in (None, "others") and not owners.daemon_group(st.st_gid) \
            and not _sticky_root_dir(st):
        return _finding(path, st, what, f"writable by {writers}", f"`chmod g-w {path}`",
                        role="daemon")
    return None
