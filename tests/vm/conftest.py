"""Fixtures for the Debian QEMU tests: the cached image layers and machines on overlays.

The image cache lives in $NPQ_VM_CACHE, else $XDG_CACHE_HOME/nix-push-queue-vm, else
/var/cache/nix-push-queue-vm (root) or ~/.cache/nix-push-queue-vm. Timings (image builds,
boots) are printed at the end of the run.

Every test that takes a machine runs once per Debian suite (ids `bookworm`, `trixie`; pick one
with `-k trixie`); a test decorated with `only_on(...)` runs on the suites it names.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from .base_image import SUITES, Suite, SuiteName, ensure_base
from .cache import Cache
from .image import ProjectImage, ensure_project, overlay
from .qemu import Machine
from .spec import Drive, VmSpec

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "mke2fs", "chroot")
TIMINGS: list[tuple[str, float]] = []
PANICS: list[str] = []  # boots the emulated kernel panicked, each booted again (qemu.py)
F = TypeVar("F", bound=Callable[..., object])


def only_on(*suites: SuiteName) -> Callable[[F], F]:
    """Run a test on these suites only: for what does not depend on the Debian release."""
    def mark(test: F) -> F:
        setattr(test, "vm_suites", suites)  # noqa: B010 (a function attribute, not a field)
        return test
    return mark


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vm_suite" in metafunc.fixturenames:
        names = getattr(metafunc.function, "vm_suites", tuple(SUITES))
        # Session scope: pytest then runs every test of one suite before booting the next.
        metafunc.parametrize("vm_suite", names, indirect=True, scope="session", ids=str)


@pytest.fixture(scope="session")
def vm_suite(request: pytest.FixtureRequest) -> Suite:
    name: SuiteName = request.param
    return SUITES[name]


def _cache_root() -> Path:
    if "NPQ_VM_CACHE" in os.environ:
        return Path(os.environ["NPQ_VM_CACHE"])
    if "XDG_CACHE_HOME" in os.environ:
        return Path(os.environ["XDG_CACHE_HOME"]) / "nix-push-queue-vm"
    if os.geteuid() == 0:
        return Path("/var/cache/nix-push-queue-vm")
    return Path.home() / ".cache" / "nix-push-queue-vm"


def _which(tool: str) -> bool:
    return shutil.which(tool) is not None or Path("/usr/sbin", tool).exists()


@pytest.fixture(scope="session")
def vm_image(vm_suite: Suite) -> ProjectImage:
    missing = [t for t in TOOLS if not _which(t)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}; run scripts/test, which installs them")
    if os.geteuid() != 0:
        pytest.fail("building the VM image needs root (debootstrap, chroot)")
    cache = Cache(_cache_root())
    started = time.monotonic()
    base = ensure_base(cache, vm_suite)
    TIMINGS.append((f"{vm_suite.name}: base layer (debootstrap; ~0 = cached)",
                    time.monotonic() - started))
    project = ensure_project(cache, base, REPO)
    TIMINGS.append((f"{vm_suite.name}: project layer (wheels + install step; 0 = cached)",
                    project.build_seconds or 0.0))
    return project


class VmPool:
    """Machines on throwaway overlays of the project layer; all killed at teardown."""

    def __init__(self, image: ProjectImage, directory: Path) -> None:
        self.image = image
        self.directory = directory
        self.machines: list[Machine] = []

    def machine(self, name: str) -> Machine:
        disk = overlay(self.image.disk, self.directory / f"{name}.qcow2")
        vm = Machine(VmSpec(name=name, kernel=self.image.base.kernel,
                            initrd=self.image.base.initrd, drives=(Drive(disk, "qcow2"),),
                            state_dir=self.directory))
        self.machines.append(vm)
        return vm

    def release(self) -> None:
        for vm in self.machines:
            TIMINGS.extend((f"{self.image.base.suite.name}: boot of {vm.name}", s)
                           for s in vm.boot_seconds)
            PANICS.extend(f"{self.image.base.suite.name}: {vm.name}: {p}"
                          for p in vm.boot_panics)
            vm.release()


@pytest.fixture(scope="module")
def vm_pool(vm_image: ProjectImage,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmPool]:
    pool = VmPool(vm_image, tmp_path_factory.mktemp("vm"))
    try:
        yield pool
    finally:
        pool.release()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("Debian VM timings")
        for what, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:8.1f} s  {what}")
        for panic in PANICS:
            terminalreporter.write_line(f"boot panicked and was tried again: {panic}")
