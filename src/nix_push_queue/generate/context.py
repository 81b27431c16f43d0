"""What the templates need, computed from a validated config.

Every value that a template will quote is checked here first, against the same filter the
template uses, so a value no format can spell becomes a config problem naming its field
before anything is rendered.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from ..config import Config, Target
from ..errors import ConfigProblem
from ..nix import priority
from ..wire.spool import SUFFIX as SPOOL_SUFFIX
from .escape import Unrepresentable, nix_word, sd_exec, sd_exec_path, sd_plain, sd_word, sh_word

Flavor = Literal["debian", "nixos"]
Filter = Callable[[object], str]

# systemd creates and chowns these for the service (StateDirectory= etc.), also for
# DynamicUser=, which can write nowhere else under ProtectSystem=strict.
STATE_ROOT = PurePosixPath("/var/lib")
NIX_DAEMON_SOCKET_DIR = "/nix/var/nix/daemon-socket"
NIX_STATE_DIR = "/nix/var/nix"
CACHE_DIRECTORY = "nix-push-queue"
# The static group that owns the GC roots directory when the daemon is a DynamicUser. Not the
# unit's name: systemd refuses to start a DynamicUser whose name a static group already has.
ROOTS_GROUP = "nix-push-queue-gcroots"


@dataclass
class Checker:
    """Runs a template's filter on a value early, recording a problem against `where`: a
    config field (file and line are filled in by the caller, who knows the source) or a
    command-line option such as `--prefix`."""

    problems: list[ConfigProblem] = field(default_factory=list)

    def use(self, where: str, value: str, *filters: Filter) -> str:
        for fn in filters:
            try:
                fn(value)
            except Unrepresentable as exc:
                self.fail(where, str(exc))
                break
        return value

    def fail(self, where: str, message: str) -> None:
        origin = "command line" if where.startswith("--") else ""
        self.problems.append(ConfigProblem(origin, None, where, message))


@dataclass(frozen=True)
class Paths:
    """Where generated files live once installed (absolute), for references between them."""

    executable: str
    config: str
    hook: str


def substituter_url(target: Target) -> str:
    """The target as a substituter: its store URL plus options and ?priority=, never a key."""
    params = [(k, v) for k, v in target.options]
    if target.priority is not None:
        params.append(("priority", str(target.priority)))
    if not params:
        return target.url
    query = "&".join(f"{k}={quote(v, safe=':/,@')}" for k, v in params)
    return target.url + ("&" if urlsplit(target.url).query else "?") + query


def fragment_context(config: Config, paths: Paths, check: Checker) -> dict[str, Any]:
    urls: list[str] = []
    keys: list[str] = []
    for i, target in enumerate(config.targets):
        if target.substitute:
            urls.append(check.use(f"targets[{i}].url", substituter_url(target), nix_word))
            if target.public_key:
                keys.append(target.public_key)
    for i, url in enumerate(config.substituters.urls):
        urls.append(check.use(f"substituters.urls[{i}]", url, nix_word))
    keys.extend(config.substituters.trusted_public_keys)
    for i, path in enumerate(config.nix.secret_key_files):
        check.use(f"nix.secret_key_files[{i}]", path, nix_word)
    hook = None
    if config.targets and config.hook.enable:
        hook = check.use("--prefix", paths.hook, nix_word)
    return {
        "keep_defaults": config.substituters.keep_defaults,
        "substituters": list(dict.fromkeys(urls)),
        "trusted_public_keys": list(dict.fromkeys(keys)),
        "secret_key_files": list(config.nix.secret_key_files),
        "hook": hook,
    }


def hook_context(config: Config, program: Sequence[str], check: Checker) -> dict[str, Any]:
    """`program`: the words that start this CLI (one installed executable, or an interpreter
    and `-m nix_push_queue` for the embedded default and the tests)."""
    words = [check.use("--executable", word, sh_word) for word in program]
    tools = {name: check.use("PATH", hook_tool(name, check), sh_word) for name in HOOK_TOOLS}
    return {
        "program": "" if check.problems else " ".join(map(sh_word, words)),
        # The only programs the hook's /bin/sh runs, by absolute path (PATH is not read).
        **{name: sh_word(path) for name, path in tools.items()},
        "programs": sorted({"/bin/sh", *tools.values()}),
        "roots_dir": sh_word(config.nix.gc_roots_dir) if config.queue.gc_roots.enable else "''",
        "socket": check.use("queue.socket", config.queue.socket, sh_word),
        "spool_dir": check.use("queue.spool_dir", config.queue.spool_dir, sh_word),
        "store_dir": check.use("nix.store_dir", config.nix.store_dir, sh_word),
        "state_dir": check.use("nix.state_dir", config.nix.state_dir, sh_word),
        "gc_roots": config.queue.gc_roots.enable,
        "timeout": f"{config.hook.timeout:g}",
        # Nix 2.8 passes no OUT_PATHS: the hook asks nix-store for DRV_PATH's outputs.
        "nix_bin_dir": config.nix.nix_bin_dir and check.use(
            "nix.nix_bin_dir", config.nix.nix_bin_dir, sh_word),
    }


# coreutils programs the hook's shell runs: found on PATH when generating (a Nix build of the
# NixOS module has coreutils there), written into the hook by absolute path.
HOOK_TOOLS = ("head", "ln", "mkdir", "mv", "rm", "sync")
# Where coreutils live on every other Linux, for a generate run with a minimal PATH.
SYSTEM_BIN = "/usr/bin:/bin"


def hook_tool(name: str, check: Checker) -> str:
    found = shutil.which(name) or shutil.which(name, path=SYSTEM_BIN)
    if found is None:
        check.fail("PATH", f"{name} (coreutils) is not on PATH; the post-build hook needs it")
        return name
    return found


def socket_context(config: Config, check: Checker) -> dict[str, Any]:
    return {
        "listen": check.use("queue.socket", config.queue.socket, sd_plain),
        "mode": f"{config.queue.socket_mode:04o}",
        "group": config.queue.socket_group,
    }


# What glob(3) reads specially in PathExistsGlob= (systemd passes GLOB_BRACE, so braces too).
_GLOB_SPECIAL = frozenset("*?[]{}\\")


def path_context(config: Config, check: Checker) -> dict[str, Any]:
    """The .path unit: start the daemon once a spool entry (`*.spool`, the hook's final
    name) is in the spool directory."""
    spool = config.queue.spool_dir.rstrip("/") or "/"
    special = sorted(_GLOB_SPECIAL.intersection(spool))
    if special:
        check.fail("queue.spool_dir", f"{spool!r} contains {' '.join(special)}, which the "
                   "systemd path unit's glob would read as a pattern; choose a directory "
                   "name without glob characters")
    glob = str(PurePosixPath(spool) / f"*{SPOOL_SUFFIX}")
    return {"glob": check.use("queue.spool_dir", glob, sd_plain)}


def _state_directory(where: str, path: str, dynamic: bool, check: Checker) -> str | None:
    """`path` relative to /var/lib for StateDirectory=, or None when it lies elsewhere."""
    pure = PurePosixPath(path)
    if ".." in pure.parts:
        check.fail(where, "use a path without '..' components")
        return None
    if pure.is_relative_to(STATE_ROOT) and pure != STATE_ROOT:
        return check.use(where, str(pure.relative_to(STATE_ROOT)), sd_word)
    if dynamic:
        check.fail(where, "with service.user unset the daemon runs as a systemd DynamicUser, "
                          "which can only write its state under /var/lib; move it under "
                          "/var/lib/ or set service.user")
    return None


def service_context(config: Config, paths: Paths, check: Checker) -> dict[str, Any]:
    dynamic = config.service.user is None
    state_dirs: list[str] = []
    # A daemon running as the store's owner (single-user Nix) opens the store directly;
    # otherwise it reaches the store through the nix-daemon's socket.
    read_write = [f"-{NIX_DAEMON_SOCKET_DIR if dynamic else NIX_STATE_DIR}"]
    for where, path in (("queue.state_dir", config.queue.state_dir),
                        ("queue.spool_dir", config.queue.spool_dir)):
        relative = _state_directory(where, path, dynamic, check)
        if relative is not None:
            state_dirs.append(relative)
        elif not dynamic:
            read_write.append(check.use(where, path, sd_word))
    groups = list(config.service.supplementary_groups)
    if config.queue.gc_roots.enable:
        roots = check.use("nix.state_dir", config.nix.gc_roots_dir, sd_word)
        if dynamic or not roots.startswith(NIX_STATE_DIR + "/"):  # else covered already
            read_write.append("-" + roots)
        if dynamic:
            groups.append(ROOTS_GROUP)
    credentials: list[tuple[str, str]] = []
    file_targets = False
    for i, target in enumerate(config.targets):
        if target.scheme == "file":
            file_targets = True
            cache_dir = unquote(urlsplit(target.url).path)
            # "-": a missing cache directory fails that target's uploads, not the daemon.
            read_write.append("-" + check.use(f"targets[{i}].url", cache_dir, sd_word))
        for suffix, attr in (("secret-key", "secret_key_file"), ("ssh-key", "ssh_key_file"),
                             ("credentials", "credentials_file"),
                             ("aws-env", "environment_file")):
            secret = getattr(target, attr)
            if secret is not None:
                path = check.use(f"targets[{i}].{attr}", secret, sd_plain)
                credentials.append((f"{target.name}-{suffix}", path))
    # The daemon's own AWS files (main.aws_files points AWS_CONFIG_FILE and
    # AWS_SHARED_CREDENTIALS_FILE at the loaded copies).
    for name, attr in (("aws-config", "aws_config_file"),
                       ("aws-credentials", "aws_shared_credentials_file")):
        secret = getattr(config.service, attr)
        if secret is not None:
            credentials.append((name, check.use(f"service.{attr}", secret, sd_plain)))
    networked = config.metrics.listen is not None or any(
        t.scheme != "file" for t in config.targets)
    return {
        "executable": check.use("--executable", paths.executable, sd_exec_path),
        "config_path": check.use("--config-path", paths.config, sd_exec),
        "user": config.service.user,
        "group": config.service.group,
        "supplementary_groups": list(dict.fromkeys(groups)),
        "state_directories": list(dict.fromkeys(state_dirs)),
        "home": check.use("queue.state_dir", config.queue.state_dir, sd_word),
        "cache_directory": CACHE_DIRECTORY,
        "read_write_paths": list(dict.fromkeys(read_write)),
        "credentials": credentials,
        # A file:// cache is usually served by a web server running as another user.
        "umask": "0022" if file_targets else "0077",
        "private_network": not networked,
        # systemd's SIGKILL must not cut the daemon's own grace short.
        "timeout_stop": int(config.queue.stop_grace) + 15,
        # Full privileges ("+"), before every start (generate/__init__.py fills them).
        "exec_start_pre": [],
        "priority": list(priority.UNIT_SETTINGS),
    }


def roots_context(config: Config, check: Checker) -> dict[str, Any] | None:
    """The GC roots directory for tmpfiles.d (and its group for sysusers.d): writable by the
    daemon, readable by the collector. None when queue.gc_roots is off."""
    if not config.queue.gc_roots.enable:
        return None
    directory = check.use("nix.state_dir", config.nix.gc_roots_dir, sd_word)
    user = config.service.user
    if user is None:
        # A DynamicUser's uid is not stable: a static group carries the write access.
        return {"directory": directory, "mode": "0775", "owner": "root", "group": ROOTS_GROUP,
                "sysusers": True}
    return {"directory": directory, "mode": "0755", "owner": user,
            "group": config.service.group or "-", "sysusers": False}
