"""The project layer of the test VM, and per-run overlays.

The project layer is a qcow2 overlay on the base disk (base_image.py) into which the project
is installed by booting the VM and running the install guide's own step
(docs/non-nixos.md, `vm-step: install`) on a wheelhouse built here by the guide's
`host-step: wheels` for the guest's Python and handed to the guest as a second, read-only
disk. It is cached under a key that hashes the base key (so the suite), the project's sources,
the guide's steps and this module, so a code change rebuilds only this layer. Each test run
boots a throwaway overlay on top, so the cached layers stay clean.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import doc
from .base_image import BaseImage
from .cache import Cache, ImageError, atomic_dir, run_tool
from .qemu import Machine, MachineError
from .spec import Drive, VmSpec

log = logging.getLogger(__name__)

# What the wheel is built from; everything else in the repository does not reach the guest.
PROJECT_FILES = ("pyproject.toml", "README.md")
PROJECT_TREES = ("src",)
WHEEL_MOUNT = "/mnt/npq"


@dataclass(frozen=True)
class ProjectImage:
    key: str
    base: BaseImage
    disk: Path  # qcow2 backed by base.disk
    build_seconds: float | None  # None: taken from the cache


def _project_sources(repo: Path) -> list[Path]:
    files = [repo / f for f in PROJECT_FILES]
    for tree in PROJECT_TREES:
        files += sorted(
            p for p in (repo / tree).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
            and not any(part.endswith(".egg-info") for part in p.parts)
        )
    return files


def project_key(base: BaseImage, repo: Path) -> str:
    h = hashlib.sha256(base.key.encode() + b"\0")
    for f in _project_sources(repo):
        h.update(str(f.relative_to(repo)).encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(doc.step("wheels").encode() + doc.step("install").encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def ensure_project(cache: Cache, base: BaseImage, repo: Path) -> ProjectImage:
    key = project_key(base, repo)
    seconds: float | None = None
    with cache.lock("project"):
        final = cache.root / f"project-{base.suite.name}-{key}"
        if not (final / "disk.qcow2").exists():
            log.info("building project layer %s", key)
            started = time.monotonic()
            with atomic_dir(final) as tmp:
                _build(tmp, base, repo)
            seconds = time.monotonic() - started
        cache.touch(final)
        cache.prune(f"project-{base.suite.name}-", keep=final)
    return ProjectImage(key, base, final / "disk.qcow2", seconds)


def overlay(backing: Path, path: Path) -> Path:
    """A fresh qcow2 disk whose unwritten blocks read from `backing`."""
    fmt = "raw" if backing.suffix == ".raw" else "qcow2"  # qemu-img wants it said
    run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", fmt,
          str(path)], timeout=60)
    return path


def _build(out: Path, base: BaseImage, repo: Path) -> None:
    wheel_root = out / "wheeldisk"
    wheelhouse(repo, wheel_root, out / "src", base.suite.python)
    size_kib = sum(p.stat().st_size for p in wheel_root.rglob("*") if p.is_file()) // 1024
    wheels_img = out / "wheels.img"
    run_tool(["mke2fs", "-q", "-t", "ext4", "-d", str(wheel_root), "-F", str(wheels_img),
          f"{size_kib * 2 + 16384}k"], timeout=120)
    disk = overlay(base.disk, out / "disk.qcow2")
    machine = Machine(VmSpec(
        name="install", kernel=base.kernel, initrd=base.initrd, state_dir=out / "log",
        drives=(Drive(disk, "qcow2"), Drive(wheels_img, "raw", read_only=True)),
    ))
    try:
        machine.start()
        _check_python(machine, base.suite.python)
        machine.succeed(f"mkdir -p {WHEEL_MOUNT} && mount -o ro /dev/vdb {WHEEL_MOUNT}")
        machine.succeed(f"cd {WHEEL_MOUNT} && {doc.step('install')}", timeout=1200)
        machine.succeed(f"umount {WHEEL_MOUNT} && rmdir {WHEEL_MOUNT}")
        machine.shutdown()
    except (MachineError, ImageError):
        _keep_log(machine, out.parent / f"install-{base.suite.name}-console.log")
        raise
    finally:
        machine.release()
    for scratch in (wheel_root, wheels_img, out / "src"):
        if scratch.is_dir():
            shutil.rmtree(scratch)
        else:
            scratch.unlink()


def _keep_log(machine: Machine, dest: Path) -> None:
    """The scratch directory goes away with a failed build: keep the whole console."""
    if machine.console_log.exists():
        shutil.copy2(machine.console_log, dest)
        log.error("install VM console kept in %s", dest)


def _check_python(machine: Machine, expected: str) -> None:
    got = machine.succeed("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'")
    if got.strip() != expected:
        raise ImageError(["python3"], 0, f"the guest has Python {got.strip()}, the wheels are "
                         f"for {expected}: fix Suite.python in tests/vm/base_image.py")


def wheelhouse(repo: Path, directory: Path, scratch: Path, python: str) -> None:
    """`directory`/wheels: the project's wheel and its dependencies' for the guest's Python,
    made by the guide's own `wheels` step run here.

    Built from a copy of the sources so nothing (build/, *.egg-info) lands in the checkout.
    """
    for f in _project_sources(repo):
        dest = scratch / f.relative_to(repo)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
    directory.mkdir(parents=True, exist_ok=True)
    # The guide says `python3`: here that is the interpreter running the tests, which has pip.
    env = {**os.environ, "PY": python, "SRC": str(scratch),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    argv = ["bash", "-c", doc.step("wheels")]
    proc = subprocess.run(argv, cwd=directory, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    if proc.returncode != 0:
        raise ImageError(argv, proc.returncode, proc.stdout + proc.stderr)
