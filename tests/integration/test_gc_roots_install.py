"""The generated sysusers.d and tmpfiles.d files, applied by the real systemd tools, make a
GC roots directory that root (the hook in the nix-daemon) writes into and that a DynamicUser
daemon (another uid, with the static group as a supplementary group) can release roots in,
and nobody else can."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nix_push_queue.config import load_document
from nix_push_queue.generate import GenerateOptions, generate
from nix_push_queue.wire import gcroots

pytestmark = pytest.mark.integration
DYNAMIC_UID = 61123  # any uid with no name: what DynamicUser allocates
UNLINK = "import os, sys; os.unlink(sys.argv[1])"


@pytest.fixture
def root_dir() -> Iterator[Path]:
    """An offline root under /tmp that other uids may traverse (tmp_path's parents are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="npq-roots-", dir="/tmp"))
    path.chmod(0o755)
    (path / "etc").mkdir()
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", path / "etc" / name)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def apply(tree: dict[str, str], root: Path) -> None:
    for relative in ("etc/sysusers.d/nix-push-queue.conf", "etc/tmpfiles.d/nix-push-queue.conf"):
        if relative in tree:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_text(tree[relative], "utf-8")
    if "etc/sysusers.d/nix-push-queue.conf" in tree:
        subprocess.run(["systemd-sysusers", f"--root={root}",
                        str(root / "etc/sysusers.d/nix-push-queue.conf")], check=True)
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create",
                    str(root / "etc/tmpfiles.d/nix-push-queue.conf")], check=True)


def unlink_as(uid: int, groups: list[int], path: Path) -> subprocess.CompletedProcess[str]:
    flags = ["--groups", ",".join(map(str, groups))] if groups else ["--clear-groups"]
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", *flags,
                           sys.executable, "-I", "-c", UNLINK, str(path)],
                          capture_output=True, text=True, check=False)


def test_dynamic_user_releases_roots_through_the_static_group(root_dir: Path) -> None:
    if shutil.which("systemd-sysusers") is None or shutil.which("setpriv") is None:
        pytest.fail("systemd-sysusers and setpriv (systemd, util-linux) are needed; "
                    "scripts/test installs them")
    config = load_document({"targets": [{"name": "a", "url": "ssh-ng://cache"}]})
    tree = generate(config, GenerateOptions())
    service = tree["etc/systemd/system/nix-push-queue.service"]
    # The group is not named after the unit: systemd refuses a DynamicUser whose name a
    # static group has (seen on Debian 13, tests/vm: test_gc_roots_under_dynamic_user).
    assert "DynamicUser=yes" in service
    assert "SupplementaryGroups=nix-push-queue-gcroots" in service
    assert "-/nix/var/nix/gcroots/nix-push-queue" in service  # ReadWritePaths
    # before every start, privileged: what apply() runs here with --root
    assert ("ExecStartPre=+systemd-sysusers /etc/sysusers.d/nix-push-queue.conf\n"
            "ExecStartPre=+systemd-tmpfiles --create /etc/tmpfiles.d/nix-push-queue.conf\n"
            ) in service
    apply(tree, root_dir)
    directory = root_dir / "nix/var/nix/gcroots/nix-push-queue"
    gid = next(int(line.split(":")[2]) for line in (root_dir / "etc/group").read_text()
               .splitlines() if line.startswith("nix-push-queue-gcroots:"))
    assert not any(line.startswith("nix-push-queue:")
                   for line in (root_dir / "etc/group").read_text().splitlines())
    st = directory.stat()
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o775", 0, gid)
    roots = []
    for i in range(2):
        path = f"/nix/store/{'a' * 31}{i}-x"
        assert gcroots.add_root(str(directory), path)  # as root: the hook in the nix-daemon
        roots.append(directory / os.path.basename(path))
    outsider = unlink_as(DYNAMIC_UID, [], roots[0])
    assert outsider.returncode != 0 and "Permission denied" in outsider.stderr
    member = unlink_as(DYNAMIC_UID, [gid], roots[0])
    assert member.returncode == 0, member.stderr
    assert not roots[0].is_symlink() and roots[1].is_symlink()


def test_static_user_owns_the_directory(root_dir: Path) -> None:
    config = load_document({"targets": [{"name": "a", "url": "ssh-ng://cache"}],
                            "service": {"user": "nobody"}})
    tree = generate(config, GenerateOptions())
    assert "etc/sysusers.d/nix-push-queue.conf" not in tree
    assert "ExecStartPre=+systemd-sysusers" not in tree["etc/systemd/system/nix-push-queue.service"]
    assert "SupplementaryGroups" not in tree["etc/systemd/system/nix-push-queue.service"]
    apply(tree, root_dir)
    st = (root_dir / "nix/var/nix/gcroots/nix-push-queue").stat()
    nobody = next(int(line.split(":")[2]) for line in (root_dir / "etc/passwd").read_text()
                  .splitlines() if line.startswith("nobody:"))
    assert (oct(st.st_mode & 0o7777), st.st_uid) == ("0o755", nobody)


def test_no_roots_no_directory() -> None:
    config = load_document({"targets": [{"name": "a", "url": "ssh-ng://cache"}],
                            "queue": {"gc_roots": {"enable": False}}})
    tree = generate(config, GenerateOptions())
    assert not [p for p in tree if "tmpfiles.d" in p or "sysusers.d" in p]
    assert "--no-gc-roots" in tree["etc/nix-push-queue/post-build-hook"]
    assert "gcroots" not in tree["etc/systemd/system/nix-push-queue.service"]
    assert "ExecStartPre" not in tree["etc/systemd/system/nix-push-queue.service"]
