"""The matrix's roots: one Debian suite each, from debootstrap, with that suite's nix-bin.

A root is cached under a key that hashes all that goes into it (suite, mirror, packages, this
module's source), like the VM base image (tests/vm/base_image.py), and appears under its final
name only when complete. debootstrap lays a minimal system; apt inside the root then installs
the packages, since nix-bin needs the virtual perl-dbdabi-94, which debootstrap's own resolver
cannot satisfy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tests.vm.cache import Cache, ImageError, atomic_dir, run_debootstrap
from tests.vm.mirror import apt_proxy_conf, host_mirror, host_proxy

from .chroot import run_in_root

log = logging.getLogger(__name__)

CACHE = Path(os.environ.get("NPQ_MATRIX_CACHE", "/var/cache/nix-push-queue-matrix"))
# The host's own Debian mirror (tests/vm/mirror.py): a local mirror or proxy just works.
MIRROR = host_mirror()
# Nix and the project's Python; then what the host gets from scripts/bootstrap.sh (nginx, sshd,
# systemd tools, ip, Prometheus, ...), since the tests that run Nix use those too, less the
# packages only the QEMU VM tests need on the host (e2fsprogs stays: chattr; trixie has it no
# longer in minbase).
BASE_PACKAGES: tuple[str, ...] = (
    "nix-bin", "libdbi-perl", "python3", "python3-venv", "ca-certificates", "curl", "git",
    "xz-utils",
)
BOOTSTRAP = Path(__file__).resolve().parents[2] / "scripts/bootstrap.sh"
HOST_ONLY = frozenset({"qemu-system-x86", "qemu-utils", "debootstrap"})


def bootstrap_packages(script: Path = BOOTSTRAP) -> tuple[str, ...]:
    """The Debian packages of NPQ_APT_PACKAGES in scripts/bootstrap.sh ("package:command")."""
    text = script.read_text()
    start = text.index("NPQ_APT_PACKAGES=(")
    block = text[start:text.index("\n)", start)]
    found = re.findall(r'^\s*"([a-z0-9][a-z0-9.+-]*):[^"]*"', block, re.MULTILINE)
    return tuple(p for p in found if p not in HOST_ONLY)


PACKAGES: tuple[str, ...] = tuple(dict.fromkeys((*BASE_PACKAGES, *bootstrap_packages())))
# Services must not start inside a root while apt installs them: they would bind the host's
# ports. invoke-rc.d asks this script first; 101 means "not allowed".
POLICY_RC = "#!/bin/sh\nexit 101\n"
# The host's own CA certificates (a proxy may re-sign TLS here) go into every root so that
# pip and curl inside trust what the host trusts.
HOST_CAS = Path("/usr/local/share/ca-certificates")


@dataclass(frozen=True)
class Suite:
    name: str
    # What the suite ships today; printed and checked, never used to pick anything.
    nix: str
    python: str
    # Some mirrors serve sid's Release file after its Valid-Until date.
    expired_release: bool = False


SUITES: dict[str, Suite] = {
    s.name: s for s in (
        Suite("bookworm", nix="2.8", python="3.11"),
        Suite("trixie", nix="2.26", python="3.13"),
        Suite("sid", nix="2.34", python="3.14", expired_release=True),
    )
}


class RootError(ImageError):
    """Building or entering a matrix root failed."""


def suite(name: str) -> Suite:
    for s in SUITES.values():
        if name in (s.name, s.nix) or s.nix.startswith(name) or name.startswith(s.nix):
            return s
    raise RootError(["matrix"], 2, f"unknown suite {name!r}: use one of "
                    + ", ".join(f"{s.name} (Nix {s.nix})" for s in SUITES.values()))


def root_key(s: Suite) -> str:
    h = hashlib.sha256()
    for part in (s.name, MIRROR, str(s.expired_release), *PACKAGES):
        h.update(part.encode() + b"\0")
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def root_path(s: Suite, cache: Path = CACHE) -> Path:
    return cache / f"{s.name}-{root_key(s)}"


def ensure_root(s: Suite, cache_dir: Path = CACHE) -> Path:
    """The root of suite `s`, built first if no root with its key exists."""
    cache = Cache(cache_dir)
    final = root_path(s, cache_dir)
    with cache.lock(f"root-{s.name}"):
        if not (final / ".complete").exists():
            started = time.monotonic()
            log.info("building root %s (debootstrap %s)", final.name, s.name)
            with atomic_dir(final) as tmp:
                _build(s, tmp, cache_dir / f"debs-{s.name}")
                (tmp / ".complete").write_text(f"{time.monotonic() - started:.0f}\n")
            log.info("built %s in %.0f s", final.name, time.monotonic() - started)
        cache.touch(final)
        cache.prune(f"{s.name}-", keep=final)
    return final


def _build(s: Suite, root: Path, debs: Path) -> None:
    (debs / "partial").mkdir(parents=True, exist_ok=True)
    # In a mount namespace of its own: what debootstrap mounts in the root (/proc, and /dev
    # in a container) goes away with it, even if it is killed.
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "debootstrap", "--variant=minbase", f"--cache-dir={debs}", s.name, str(root), MIRROR]
    run_debootstrap(argv, root)
    _prepare(s, root)
    _apt(root, debs, "update", "-q")
    _apt(root, debs, "install", "-y", "-q", "--no-install-recommends", *PACKAGES)
    _chroot(root, debs, "update-ca-certificates")
    for junk in ("var/lib/apt/lists",):
        for p in (root / junk).glob("*"):
            if p.is_file():
                p.unlink()


def _prepare(s: Suite, root: Path) -> None:
    etc = root / "etc"
    shutil.copy2("/etc/resolv.conf", etc / "resolv.conf")
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC)
    policy.chmod(0o755)
    proxy = apt_proxy_conf(host_proxy())
    if proxy:
        (etc / "apt/apt.conf.d/99npq-proxy").write_text(proxy)
    if s.expired_release:
        (etc / "apt/apt.conf.d/99npq-valid-until").write_text(
            'Acquire::Check-Valid-Until "false";\n')
    cas = root / "usr/local/share/ca-certificates"
    cas.mkdir(parents=True, exist_ok=True)
    for crt in sorted(HOST_CAS.glob("*.crt")) if HOST_CAS.is_dir() else []:
        shutil.copy2(crt, cas / crt.name)
    if Path("/etc/pip.conf").exists():
        shutil.copy2("/etc/pip.conf", etc / "pip.conf")


def _apt(root: Path, debs: Path, *args: str) -> None:
    _chroot(root, debs, "apt-get", "-o", "Dpkg::Use-Pty=0", *args)


def _chroot(root: Path, debs: Path, *argv: str) -> None:
    # The suite's .deb files stay on the host between builds, so a rebuild downloads nothing.
    proc = run_in_root(root, argv, binds={"/var/cache/apt/archives": debs},
                       timeout=1800, capture=True)
    if proc.returncode != 0:
        raise RootError(["chroot", str(root), *argv], proc.returncode,
                        proc.stdout + proc.stderr)
