"""Running a command inside a root, with the kernel file systems and the checkout mounted.

Every mount is made inside a private mount namespace (`unshare --mount`), so all of them
vanish with the command, however it ends: a crashed or killed run never leaves /dev or the
checkout mounted inside a cached root, where a later `rm -rf` of the root would reach them.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

# The checkout's place inside every root: fixed, so a root's editable install serves any
# checkout, wherever it lives on the host.
SRC = "/src"
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Host variables that describe this machine's network (its CA bundle, pip's settings) and
# the test suite's own switches; the rest of the host's environment stays outside.
PASSED = ("CI", "TERM", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
          "NO_PROXY", "PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK")
PASSED_PREFIXES = ("NPQ_",)


def root_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k in PASSED or k.startswith(PASSED_PREFIXES)}
    env.update(PATH=ROOT_PATH, HOME="/root", LANG="C.UTF-8", LC_ALL="C.UTF-8",
               DEBIAN_FRONTEND="noninteractive")
    env.update(extra or {})
    return env


def mount_script(root: Path, binds: Mapping[str, Path]) -> str:
    """The shell lines that mount /proc, /sys, /dev (with its pts) and `binds` under `root`."""
    r = shlex.quote(str(root))
    lines = [
        "set -e",
        # The root as a mount point of its own, as / is on a real system: `ip netns` and
        # `unshare --propagation` change the propagation of / and fail on a plain directory.
        f"mount --bind {r} {r}",
        f"mount -t proc proc {r}/proc",
        f"mount -t sysfs -o ro sysfs {r}/sys",
        f"mount --rbind /dev {r}/dev",
    ]
    for inside, host in binds.items():
        target = shlex.quote(str(root) + inside)
        lines.append(f"mkdir -p {target}")
        lines.append(f"mount --rbind {shlex.quote(str(host))} {target}")
    return "\n".join(lines)


def chroot_argv(root: Path, argv: Sequence[str], *, binds: Mapping[str, Path] | None = None,
                cwd: str = "/") -> list[str]:
    """argv that runs `argv` in `root` (as root) inside a private mount namespace."""
    script = "\n".join([
        mount_script(root, binds or {}),
        # pivot_root, not only chroot: Nix 2.8 runs its post-build-hook and ssh after setns()
        # into its own mount namespace, which resets a chroot to the namespace's root.
        f"cd {shlex.quote(str(root))}",
        "pivot_root . .",
        "umount -l .",
        "exec chroot . /bin/sh -c "
        + shlex.quote(f'cd {shlex.quote(cwd)} && exec "$@"') + ' sh "$@"',
    ])
    return ["unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", script, "npq-chroot", *argv]


def run_in_root(root: Path, argv: Sequence[str], *, binds: Mapping[str, Path] | None = None,
                cwd: str = "/", env: Mapping[str, str] | None = None,
                timeout: float | None = None, capture: bool = False,
                ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(chroot_argv(root, argv, binds=binds, cwd=cwd), env=root_env(env),
                          timeout=timeout, check=False, text=True, capture_output=capture)


def mounts_below(root: Path) -> list[str]:
    """Mount points under `root` seen from here (there should never be any)."""
    prefix = str(root.resolve()) + "/"
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(prefix)]
