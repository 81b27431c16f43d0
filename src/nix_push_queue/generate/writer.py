"""Write a generated tree under an output root, all or nothing.

Everything is checked before the first write: paths, directories in the way, and files that
are not ours (those are refused unless `force`). New contents go to temporary files beside
their targets (same directory, so same filesystem), are fsync'd, then moved into place one by
one with os.replace; each replaced file is first hard-linked to a backup name, so a failure
half-way through puts every earlier file back. Either the whole new tree is in place or the
old one is, byte for byte.

A file is ours when it carries MARKER in its first lines, or when the manifest we keep
(MANIFEST: sha256 of every file we wrote) still matches its content; the daemon's JSON
config, which cannot hold a comment, relies on the latter. Files a previous run wrote that
this run no longer produces are removed, unless someone has changed them since.

The manifest is read as untrusted: anyone who could write under the root could have planted
one. Each entry must be a plain relative path inside the tree and a sha256, or the whole
manifest is refused and nothing is written or removed; a removal whose real path (through
symlinked directories) leaves the tree is refused the same way, and so is a write: a directory
on the way to a file that is a symlink resolving out of the tree (`etc/systemd/system ->
/elsewhere`) stops the run before anything is written. Links that stay inside are followed.

`then`, when given, runs once the new tree is in place but before the old one is thrown
away: if it fails, the old tree is put back (generate's `!include` line is that step).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from ..errors import OutputError
from . import MARKER, GeneratedFile

log = logging.getLogger(__name__)

MANIFEST = "etc/nix-push-queue/generated.sha256"
Action = Literal["create", "replace", "unchanged", "remove"]


@dataclass(frozen=True)
class Change:
    path: str
    action: Action


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_file(files: Sequence[GeneratedFile]) -> GeneratedFile:
    lines = [f"# {MARKER}: the files it wrote here and their sha256. A listed file whose",
             "# content still matches is ours to replace or remove.",
             *(f"{_sha256(f.text.encode())}  {f.path}" for f in sorted(files, key=_path))]
    return GeneratedFile(MANIFEST, "\n".join(lines) + "\n", 0o644)


def _path(f: GeneratedFile) -> str:
    return f.path


def _read_manifest(root: Path) -> dict[str, str]:
    try:
        text = (root / MANIFEST).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    if MARKER not in text.partition("\n")[0]:
        return {}
    manifest = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        digest, _, rel = line.partition("  ")
        if not _DIGEST.fullmatch(digest) or not _plain_relative(rel):
            raise OutputError(
                f"{root / MANIFEST} lists {line[:100]!r}, not a file of this tree with its "
                "sha256: nix-push-queue did not write that; nothing was changed. Remove the "
                "manifest and check the files under " + str(root))
        manifest[rel] = digest
    return manifest


_DIGEST = re.compile(r"[0-9a-f]{64}")


def _plain_relative(rel: str) -> bool:
    """A path as we write them: relative, `/`-separated, no empty, `.` or `..` part."""
    parts = rel.split("/")
    return bool(rel) and all(p not in ("", ".", "..") and "\0" not in p for p in parts)


def _is_ours(rel: str, current: bytes, manifest: dict[str, str]) -> bool:
    head = current[:512].decode("utf-8", "replace").splitlines()[:3]
    return any(MARKER in line for line in head) or manifest.get(rel) == _sha256(current)


def _safe_relative(rel: str) -> None:
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise OutputError(f"refusing to write {rel!r}: not a plain relative path")


@dataclass
class Plan:
    writes: list[tuple[GeneratedFile, Action]] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


def _link_leaving(root: Path, rel: str) -> tuple[Path, str] | None:
    """The first directory on the way to `rel` that is a symlink resolving out of the tree
    (with where it leads), or None: every directory on the way stays inside `root`."""
    real_root = os.path.realpath(root)
    here = root
    for part in PurePosixPath(rel).parent.parts:
        here = here / part
        if not here.is_symlink():
            continue
        real = os.path.realpath(here)
        if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
            return here, os.readlink(here)
    return None


def _plan_file(root: Path, f: GeneratedFile, manifest: dict[str, str], plan: Plan) -> None:
    _safe_relative(f.path)
    leaving = _link_leaving(root, f.path)
    if leaving is not None:
        link, target = leaving
        raise OutputError(f"{link} is a symlink to {target}, outside {root}: refusing to "
                          f"write {f.path} through it; nothing was changed. Replace the link "
                          "with a directory, or choose another --out")
    dest = root / f.path
    if not os.path.lexists(dest):
        plan.writes.append((f, "create"))
        return
    if dest.is_symlink() or not dest.is_file():
        if dest.is_dir() and not dest.is_symlink():
            raise OutputError(f"{dest} is a directory; remove it or choose another --out")
        plan.foreign.append(str(dest))
        plan.writes.append((f, "replace"))
        return
    current = dest.read_bytes()
    if current == f.text.encode() and (dest.stat().st_mode & 0o7777) == f.mode:
        plan.unchanged.append(f.path)
        return
    if not _is_ours(f.path, current, manifest):
        plan.foreign.append(str(dest))
    plan.writes.append((f, "replace"))


def plan_tree(root: Path, files: Sequence[GeneratedFile]) -> Plan:
    manifest = _read_manifest(root)
    everything = [*files, _manifest_file(files)]
    plan = Plan()
    for f in everything:
        _plan_file(root, f, manifest, plan)
    wanted = {f.path for f in everything}
    for rel in sorted(set(manifest) - wanted):
        if _link_leaving(root, rel) is not None:
            raise OutputError(f"{root / MANIFEST} lists {rel!r}, which leads out of {root} "
                              "through a symlink; nothing was changed. Remove the manifest "
                              "or the link")
        dest = root / rel
        with contextlib.suppress(OSError):
            if dest.is_file() and not dest.is_symlink() and _is_ours(
                    rel, dest.read_bytes(), {rel: manifest[rel]}):
                plan.removals.append(rel)
    return plan


def write_tree(root: Path, files: Sequence[GeneratedFile], *, force: bool = False,
               dry_run: bool = False,
               then: Callable[[], object] | None = None) -> tuple[Change, ...]:
    """Put `files` under `root` atomically (see the module doc), then run `then`. Raises
    OutputError, having changed nothing, when a file is in the way or cannot be written or
    `then` fails."""
    plan = plan_tree(root, files)
    if plan.foreign and not force:
        raise OutputError(
            "refusing to overwrite files nix-push-queue did not write: "
            + ", ".join(plan.foreign) + "; move them away or pass --force")
    changes = [Change(f.path, action) for f, action in plan.writes]
    changes += [Change(rel, "remove") for rel in plan.removals]
    changes += [Change(rel, "unchanged") for rel in plan.unchanged]
    if dry_run:
        return tuple(changes)
    if plan.writes or plan.removals:
        _Transaction(root).run(plan, then)
    elif then is not None:
        then()
    return tuple(changes)


@dataclass
class _Transaction:
    root: Path
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    created_dirs: list[Path] = field(default_factory=list)
    temps: dict[Path, Path] = field(default_factory=dict)  # destination -> temp file
    backups: dict[Path, Path] = field(default_factory=dict)  # destination -> old content
    placed: list[Path] = field(default_factory=list)  # destinations that had no old content
    moved: set[Path] = field(default_factory=set)  # destinations no longer holding old content

    def run(self, plan: Plan, then: Callable[[], object] | None) -> None:
        try:
            for f, _ in plan.writes:
                self._stage(f)
            for dest, temp in self.temps.items():
                self._backup(dest)
                os.replace(temp, dest)
                self.moved.add(dest)
                if dest not in self.backups:
                    self.placed.append(dest)
            for rel in plan.removals:
                self._backup(self.root / rel)
                os.unlink(self.root / rel)
                self.moved.add(self.root / rel)
            if then is not None:
                then()
        except OSError as exc:
            self._rollback()
            raise OutputError(f"could not write the generated files under {self.root}: "
                              f"{exc}; nothing was changed") from exc
        except BaseException:
            self._rollback()
            raise
        self._finish()

    def _mkdirs(self, directory: Path) -> None:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            d.mkdir()
            self.created_dirs.append(d)
            d.chmod(0o755)

    def _stage(self, f: GeneratedFile) -> None:
        dest = self.root / f.path
        self._mkdirs(dest.parent)
        temp = dest.with_name(f".{dest.name}.npq-new-{self.token}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.temps[dest] = temp
        try:
            os.write(fd, f.text.encode())
            os.fchmod(fd, f.mode)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _backup(self, dest: Path) -> None:
        if os.path.lexists(dest):
            backup = dest.with_name(f".{dest.name}.npq-old-{self.token}")
            os.link(dest, backup, follow_symlinks=False)
            self.backups[dest] = backup

    def _rollback(self) -> None:
        for dest, backup in self.backups.items():
            with contextlib.suppress(OSError):
                # Backup and an unmoved destination are one inode: rename would be a no-op.
                if dest in self.moved:
                    os.replace(backup, dest)
                else:
                    os.unlink(backup)
        for path in [*self.placed, *self.temps.values()]:
            with contextlib.suppress(OSError):
                os.unlink(path)
        for d in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()

    def _finish(self) -> None:
        for backup in self.backups.values():
            with contextlib.suppress(OSError):
                os.unlink(backup)
        for directory in {dest.parent for dest in [*self.temps, *self.backups]}:
            _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
