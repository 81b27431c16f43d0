"""What a test VM is made of, and the QEMU command line that boots it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .base_image import BACKDOOR_PORT


@dataclass(frozen=True)
class Drive:
    path: Path
    format: Literal["qcow2", "raw"]
    read_only: bool = False


@dataclass(frozen=True)
class VmSpec:
    name: str
    kernel: Path
    initrd: Path
    drives: tuple[Drive, ...]  # the first is the root disk (/dev/vda)
    state_dir: Path  # console and QEMU logs
    memory_mb: int = 1536
    cpus: int = 2
    accel: Literal["tcg", "kvm"] = "tcg"  # KVM is not usable on the machines this runs on


def qemu_argv(s: VmSpec, console_log: Path, backdoor: Path) -> list[str]:
    argv = [
        "qemu-system-x86_64", "-name", s.name, "-machine", "q35", *_accel(s.accel),
        # la57=off: with `max`, trixie's kernel (6.12) turns on 5-level paging, and under
        # QEMU 7.2's TCG one boot in several then panicked in kmem_cache_free (a vmemmap
        # read); no real Debian host of ours has 5-level paging, so the guest does without.
        "-cpu", "max,la57=off", "-smp", str(s.cpus), "-m", str(s.memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-nic", "none",
        "-kernel", str(s.kernel), "-initrd", str(s.initrd),
        "-append", "root=/dev/vda rw console=ttyS0 panic=-1 loglevel=4 "
                  "systemd.show_status=auto systemd.log_color=0",
        "-chardev", f"file,id=console,path={console_log},append=on",
        "-serial", "chardev:console",
        "-device", "virtio-rng-pci",
        "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=backdoor,path={backdoor},server=on,wait=off",
        "-device", f"virtserialport,chardev=backdoor,name={BACKDOOR_PORT}",
    ]
    for d in s.drives:
        ro = ",read-only=on" if d.read_only else ""
        # cache=writeback (the default) honours the guest's flushes, so what the guest
        # fsync'd survives crash(); what it did not is lost, as on real hardware.
        argv += ["-drive", f"file={d.path},if=virtio,format={d.format},cache=writeback{ro}"]
    return argv



def _accel(accel: Literal["tcg", "kvm"]) -> list[str]:
    # thread=single: TCG runs every vCPU on one host thread. With a thread per vCPU (the
    # default), a guest CPU can run a stale translation of kernel code another CPU is
    # patching; one CI boot in dozens then oopsed on int3 in sched_clock_tick and panicked.
    # The guest stays a 2-CPU machine; the host has 2 cores and runs the tests beside it.
    return ["-accel", "tcg,thread=single"] if accel == "tcg" else ["-accel", "kvm"]
