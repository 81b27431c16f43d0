"""A power cut right after a build, with the daemon down and kept down across the reboot
(issue 22): are the GC root and the spool entry the generated hook made still on the disk?

The hook makes its root links and its spool entry, then `sync -- ENTRY SPOOL ROOTS`. Two arms
tell that sync from luck:
- control: a copy of the installed hook whose sync line is `:`, and nothing else changed. One
  build, then QEMU is killed at once. Its root link or its entry (or both) must be gone after
  the reboot; if not, this setup cannot lose unsynced writes and the test says so and fails;
- real: the installed hook, byte for byte. Three builds, the same cut; every link and entry
  must be there.
In both arms the hook Nix runs is a two-line wrapper: `sync`, then exec of the hook under
test. Nix's own part (the outputs, their registration in a WAL database Nix does not fsync at
commit, `synchronous=normal`) is then on the disk before the hook starts, so whatever the cut
takes afterwards is the hook's, and a path the cut took cannot be mistaken for a root's fault.
While an arm runs, the guest's disk gets only what someone fsyncs: ext4's periodic journal
commit and the flusher's periodic writeback are turned off (a reboot turns them back on).
"""

from __future__ import annotations

import base64
import shlex
import time
from dataclasses import dataclass

from scenarios import steps

from .debian import PATH_UNIT, SERVICE, USER_BUILD, root_link
from .qemu import Machine

HOOK = "/etc/nix-push-queue/post-build-hook"  # generate's path; nix.conf names it
SPOOL = "/var/lib/nix-push-queue/spool"  # the schema's queue.spool_dir
SAVED = "/root/npq-power-cut"
REAL = f"{SAVED}/post-build-hook"  # the installed hook, byte for byte
NOSYNC = f"{SAVED}/post-build-hook.nosync"
UNITS = (PATH_UNIT, steps.SOCKET_UNIT, SERVICE)
SYSCTLS = ("vm.dirty_writeback_centisecs", "vm.dirty_expire_centisecs")
# Only the sync call of the hook's spool step becomes `:` (which takes any arguments).
NOSYNC_SED = r"s|^\( *\)/[^ ]*/sync -- |\1: -- |"
WRAPPER = ("#!/bin/sh\n# npq power-cut test: Nix's writes first, then the hook under test\n"
           "sync\nexec {}\n")
# The flusher off, dirty pages never expire, journal commit hourly: only an fsync (or the
# remount's own sync, before the build) writes anything.
QUIET_DISK = ("mount -o remount,commit=3600 /", "sysctl -q -w vm.dirty_writeback_centisecs=0 "
              "vm.dirty_expire_centisecs=360000")
# No spool directory yet (no daemon ever ran): the hook makes it, and syncs it too.
LIST_ENTRIES = (f"cd {SPOOL} 2>/dev/null || exit 0; "
                "for f in *.spool .*.tmp; do [ -f \"$f\" ] || continue; "
                "printf '%s %s\\n' \"$f\" \"$(base64 -w0 < \"$f\")\"; done")


@dataclass(frozen=True)
class Held:
    """What the test changed and must give back: the units it disabled, the disk settings."""
    enabled: tuple[str, ...]
    sysctls: tuple[str, ...]


@dataclass(frozen=True)
class HookWrites:
    """What of a hook's work the disk shows: where each path's root link points ("" if
    absent), and the spool entries (name: content) made since the arm began."""
    links: dict[str, str]
    entries: dict[str, str]

    def rooted(self, path: str) -> bool:
        return self.links.get(path) == path

    def queued(self, path: str) -> bool:
        return any(path in text.split() for text in self.entries.values())

    def describe(self, path: str) -> str:
        link = "kept" if self.rooted(path) else "lost"
        if self.queued(path):
            entry = "kept"
        elif self.entries:
            entry = f"lost ({len(self.entries)} entry file(s), {path} in none: empty)"
        else:
            entry = "lost (no entry file)"
        return f"root link {link}, spool entry {entry}"


def hold_daemon_down(vm: Machine) -> Held:
    """Stop the daemon and keep it down through reboots: the path unit would start it at
    boot on the spooled entries. The disable is synced, or the cut could undo it."""
    enabled = tuple(unit for unit in UNITS
                    if vm.execute(f"systemctl is-enabled --quiet {unit}")[0] == 0)
    sysctls = tuple(vm.succeed(f"sysctl -n {' '.join(SYSCTLS)}").split())
    vm.succeed(f"systemctl stop {' '.join(UNITS)}", f"systemctl disable --quiet {' '.join(UNITS)}",
               "sync")
    return Held(enabled, sysctls)


def prepare_hooks(vm: Machine) -> None:
    """Save the installed hook, and make its twin without the sync: exactly one line apart."""
    hook = vm.succeed(f"{steps.NIX} show-config | sed -n 's/^post-build-hook = //p'").strip()
    assert hook == HOOK, f"Nix runs {hook!r}, not the generated {HOOK}"
    vm.succeed(f"install -d -m 700 {SAVED}", f"cp -p {HOOK} {REAL}", f"cmp {HOOK} {REAL}",
               f"sed {shlex.quote(NOSYNC_SED)} {REAL} > {NOSYNC}", f"chmod 755 {NOSYNC}")
    changed = vm.execute(f"diff {REAL} {NOSYNC}")[1]
    removed = [line for line in changed.splitlines() if line.startswith("<")]
    added = [line for line in changed.splitlines() if line.startswith(">")]
    assert len(removed) == len(added) == 1 and "/sync -- " in removed[0], changed
    assert "sync" not in added[0], added


def use_hook(vm: Machine, hook: str) -> None:
    """Nix runs `hook` after the wrapper's sync; the disk goes quiet; all of it synced."""
    vm.copy_from_host_text(WRAPPER.format(hook), HOOK, mode="0755")
    vm.succeed(*QUIET_DISK, "sync")


def entries(vm: Machine) -> dict[str, str]:
    """The spool's entries and hidden half-written ones: name -> content."""
    found = {}
    for line in vm.succeed(LIST_ENTRIES).splitlines():
        name, _, data = line.partition(" ")
        found[name] = base64.b64decode(data).decode()
    return found


def hook_writes(vm: Machine, paths: list[str], before: set[str]) -> HookWrites:
    """Read-only (no command here may sync): the links of `paths`, entries not in `before`."""
    links = {p: vm.succeed(f"readlink {shlex.quote(root_link(p))} || true").strip()
             for p in paths}
    return HookWrites(links, {n: t for n, t in entries(vm).items() if n not in before})


def cut_power(vm: Machine, since: float) -> float:
    """QEMU SIGKILLed: the guest's page cache is gone. Boots again; returns the seconds from
    `since` to the cut."""
    boot = vm.boot_id
    vm.crash()
    gap = time.monotonic() - since
    vm.start()
    assert vm.boot_id != boot, "the machine did not boot again"
    vm.wait_for_unit("multi-user.target", timeout=600)
    return gap


def control_once(vm: Machine, name: str) -> tuple[bool, str]:
    """One build under the sync-less hook, then the cut: (did the cut take any of its
    writes, what it took). Its leftovers are removed, so no daemon ever sees them."""
    use_hook(vm, NOSYNC)
    before = set(entries(vm))
    built = steps.build(vm, USER_BUILD, name)
    ended = time.monotonic()
    made = hook_writes(vm, [built.path], before)
    # Proof the control hook ran and did its work, in the page cache at least.
    assert made.rooted(built.path) and made.queued(built.path), made.describe(built.path)
    gap = cut_power(vm, ended)
    after = hook_writes(vm, [built.path], before)
    lost = not (after.rooted(built.path) and after.queued(built.path))
    vm.succeed(f"rm -f {shlex.quote(root_link(built.path))}",
               *(f"rm -f {SPOOL}/{shlex.quote(n)}" for n in after.entries))
    return lost, (f"control (hook's sync made `:`), power cut {gap:.1f} s after the build: "
                  f"{after.describe(built.path)}")


def control_arm(vm: Machine) -> str:
    """The cut must take something the sync-less hook wrote: else the real arm proves
    nothing. One retry, for a stray fsync by another process between build and cut."""
    seen = []
    for attempt in (1, 2):
        lost, what = control_once(vm, f"npq-pc-control{attempt}")
        seen.append(what)
        if lost:
            return what
    raise AssertionError("the power cut took nothing the hook wrote without its sync, twice; "
                         "this setup cannot tell the hook's sync from luck: " + "; ".join(seen))


def real_arm(vm: Machine) -> tuple[list[steps.Built], str]:
    """Three builds under the installed hook, the cut: every root link and entry is there,
    and every path still valid. Returns the builds and what was seen."""
    use_hook(vm, REAL)
    before = set(entries(vm))
    built = [steps.build(vm, USER_BUILD, f"npq-pc-{i}") for i in range(3)]
    # At once: no command between the last build and the cut.
    gap = cut_power(vm, time.monotonic())
    after = hook_writes(vm, [b.path for b in built], before)
    for item in built:
        assert after.rooted(item.path) and after.queued(item.path), \
            f"{item.path}: {after.describe(item.path)}"
        vm.succeed(f"nix-store --check-validity {shlex.quote(item.path)}")
    return built, (f"real hook, power cut {gap:.1f} s after the last of 3 builds: every root "
                   "link and spool entry kept")


def restore(vm: Machine, held: Held) -> None:
    """Give back what the shared machine's later tests rely on: the installed hook, the disk
    settings, the units enabled as before and running, the HTTP cache up. A machine the
    test left down (a boot that failed after a cut) is booted first."""
    if not vm.is_up():
        vm.start()
        vm.wait_for_unit("multi-user.target", timeout=600)
    put_back = (f"test ! -e {REAL} || cmp -s {REAL} {HOOK} || "
                f"{{ cp -p {REAL} {HOOK}.npq-tmp && mv -f {HOOK}.npq-tmp {HOOK}; }}")
    sysctls = " ".join(f"{k}={v}" for k, v in zip(SYSCTLS, held.sysctls, strict=True))
    vm.succeed(put_back, f"test ! -e {REAL} || cmp {REAL} {HOOK}", f"rm -rf {SAVED}",
               "mount -o remount,commit=0 /", f"sysctl -q -w {sysctls}")
    if held.enabled:
        vm.succeed(f"systemctl enable --quiet {' '.join(held.enabled)}")
    vm.succeed(f"systemctl start {' '.join(UNITS)} nginx.service")
