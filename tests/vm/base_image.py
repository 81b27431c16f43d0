"""The base layer of the test VM: a Debian release from debootstrap, as a raw ext4 disk.

One layer per suite (Debian 12 bookworm, Debian 13 trixie), so the install guide is proven on
each. Built without loop mounts (debootstrap into a directory, `mke2fs -d` from it) and cached
under a key that hashes everything that goes into it: the suite, the package list and mirror,
this module's source and the guest files. The project is not in this layer (see image.py), so a
code change does not redo debootstrap.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .cache import Cache, ImageError, atomic_dir, run_debootstrap, run_tool
from .mirror import host_mirror

log = logging.getLogger(__name__)

SuiteName = Literal["bookworm", "trixie"]


@dataclass(frozen=True)
class Suite:
    name: SuiteName  # the debootstrap suite, also the pytest id
    release: str  # Debian's version number, for people
    python: str  # the guest's python3 (X.Y): the wheels it installs are built for it


SUITES: dict[SuiteName, Suite] = {
    "bookworm": Suite("bookworm", "12", "3.11"),
    "trixie": Suite("trixie", "13", "3.13"),
}
# The host's own Debian mirror (tests/vm/mirror.py): a local mirror or proxy just works.
MIRROR = host_mirror()
# linux-image-cloud-amd64: the VM flavour boots faster than the generic kernel.
# libdbi-perl: nix-bin's libdbd-sqlite3-perl needs the virtual perl-dbdabi-94, which
# debootstrap's resolver cannot satisfy by itself. The names are the same in bookworm and trixie.
PACKAGES: tuple[str, ...] = (
    "systemd", "systemd-sysv", "udev", "kmod", "dbus", "procps", "iproute2",
    "linux-image-cloud-amd64", "initramfs-tools",
    "nix-bin", "nix-setup-systemd", "libdbi-perl",
    "python3", "python3-venv", "nginx-light", "curl",
)
DISK_SIZE = "4G"
GUEST = Path(__file__).parent / "guest"
BACKDOOR_PORT = "org.npq.backdoor"
# A normal user who builds through the nix-daemon, as people do on a multi-user install.
USER = "alice"
# Units that would only add noise or boot time in a throwaway VM.
MASKED = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
    "fstrim.timer", "e2scrub_reap.service", "getty@tty1.service",
)


@dataclass(frozen=True)
class BaseImage:
    key: str
    suite: Suite
    disk: Path  # raw ext4, read-only from here on: VMs run on qcow2 overlays
    kernel: Path
    initrd: Path


def base_key(suite: Suite) -> str:
    h = hashlib.sha256()
    for part in (suite.name, suite.python, MIRROR, DISK_SIZE, USER, *PACKAGES, *MASKED):
        h.update(part.encode() + b"\0")
    h.update(Path(__file__).read_bytes())
    for f in sorted(GUEST.iterdir()):
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def ensure_base(cache: Cache, suite: Suite) -> BaseImage:
    key = base_key(suite)
    # One lock for every suite: two debootstraps at once only slow each other down.
    with cache.lock("base"):
        final = cache.root / f"base-{suite.name}-{key}"
        if not (final / "disk.raw").exists():
            log.info("building base image %s (debootstrap %s)", key, suite.name)
            with atomic_dir(final) as tmp:
                _build(tmp, suite, cache.root / "debs")
        cache.touch(final)
        cache.prune(f"base-{suite.name}-", keep=final)
    return BaseImage(key, suite, final / "disk.raw", final / "vmlinuz", final / "initrd.img")


def _build(out: Path, suite: Suite, debs: Path) -> None:
    root = out / "root"
    debs.mkdir(parents=True, exist_ok=True)
    argv = ["debootstrap", "--variant=minbase", f"--cache-dir={debs}",
            f"--include={','.join(PACKAGES)}", suite.name, str(root), MIRROR]
    try:
        run_debootstrap(argv, root)
    finally:
        _unmount_below(root)
    _configure(root)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise ImageError(["debootstrap"], 0, f"expected one kernel in the image: {kernels}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    shutil.copy2(kernels[0], out / "vmlinuz")
    shutil.copy2(root / "boot" / f"initrd.img-{version}", out / "initrd.img")
    run_tool(["mke2fs", "-q", "-t", "ext4", "-L", "npqroot", "-d", str(root), "-F",
          str(out / "disk.raw"), DISK_SIZE], timeout=900)
    shutil.rmtree(root)


def _configure(root: Path) -> None:
    etc = root / "etc"
    (etc / "hostname").write_text("npq-vm\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 npq-vm\n::1 localhost\n")
    (etc / "fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    # The user's own nix.conf (uninstall must give it back byte for byte) on a machine without
    # network: no default cache, or every build first waits on cache.nixos.org.
    with open(etc / "nix/nix.conf", "a") as conf:
        conf.write("\n# This machine is offline.\nsubstituters =\n")
    lib = root / "usr/local/lib/npq-test"
    lib.mkdir(parents=True, exist_ok=True)
    shutil.copy2(GUEST / "backdoor.py", lib / "backdoor.py")
    units = etc / "systemd/system"
    shutil.copy2(GUEST / "npq-backdoor.service", units / "npq-backdoor.service")
    wants = units / "multi-user.target.wants"
    wants.mkdir(exist_ok=True)
    (wants / "npq-backdoor.service").symlink_to("/etc/systemd/system/npq-backdoor.service")
    # nginx is installed for scenarios that serve a cache over HTTP; they start it themselves.
    (wants / "nginx.service").unlink(missing_ok=True)
    for unit in MASKED:
        (units / unit).unlink(missing_ok=True)
        (units / unit).symlink_to("/dev/null")
    _chroot(root, "passwd", "-d", "root")
    _chroot(root, "useradd", "--create-home", "--shell", "/bin/bash",
            "--groups", "nix-users", USER)
    for junk in ("var/cache/apt", "var/lib/apt/lists"):
        for p in (root / junk).glob("*"):
            if p.is_file():
                p.unlink()


def _chroot(root: Path, *argv: str) -> None:
    run_tool(["chroot", str(root), *argv], timeout=120)


def _unmount_below(root: Path) -> None:
    prefix = str(root.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mnt in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False)

