"""The one place that knows which Nix is installed and how its commands are spelled.

`nix --version` is asked once per Nix binary (cached by its resolved path); the version and
implementation decide the spelling of the commands whose syntax changed:

- `nix path-info --json`: Nix 2.33 added `--json-format 1|2` and warns without it ("will
  become an error in a future release"); the output form itself (a list up to 2.18, an object
  keyed by store path from 2.19) is recognised by `pathinfo.parse_path_infos` from the text.
- `nix config show` (Nix >= 2.20) vs `nix show-config` (a deprecated alias since then).
- Derivation installables: `DRV^out` / `DRV^*` from Nix 2.13, where a bare `DRV` names the
  .drv file itself. Before (Nix 2.8), `nix` commands take no output selector at all: a bare
  `DRV` means all its outputs (`nix-store -r` alone spells `DRV!out`).

Lix prints `nix (Lix, like Nix) 2.91.1`: its numbers continue Nix 2.18's line, so Lix gets
the pre-2.19 spellings whatever its version says. Determinate Nix prints
`nix (Determinate Nix 3.6.2) 2.29.0`: the last number is the Nix it is built on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import NpqError
from . import runner

Implementation = Literal["nix", "lix"]
JsonFormat = Literal[1, 2]

VERSION_TIMEOUT = 60.0
# Nix's own spelling: `nix (Nix) 2.8.0`, `nix (Nix) 2.34.8`, `nix (Lix, like Nix) 2.91.1`,
# `nix (Lix, like Nix) 2.90.0-beta.1-lixpre20240506-b6799ab`, `nix (Determinate Nix 3.6.2) 2.29.0`.
_VERSION = re.compile(r"^\S+ \((?P<impl>[^)]*)\) (?P<major>\d+)\.(?P<minor>\d+)"
                      r"(?:\.(?P<patch>\d+))?(?P<rest>\S*)\s*$")

# First versions (major, minor) that accept a spelling (from Nix's release notes).
CONFIG_SHOW_SINCE = (2, 20)  # `nix config show`; `show-config` deprecated
JSON_FORMAT_SINCE = (2, 33)  # `nix path-info --json-format 1|2`
CARET_SINCE = (2, 13)  # `DRV^out`; a bare `DRV` is the .drv file itself


class DialectError(NpqError):
    """`nix --version` failed, or printed something we cannot read: we do not guess a Nix's
    syntax. `transient`: it timed out (a loaded machine), asking again may work."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        self.transient = transient
        super().__init__(message)


@dataclass(frozen=True)
class NixVersion:
    implementation: Implementation
    major: int
    minor: int
    patch: int
    text: str  # the line as Nix printed it

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> NixVersion:
    """The first line of `nix --version`."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    match = _VERSION.match(line)
    if match is None:
        raise DialectError(f"cannot read the Nix version from `nix --version`: {line[:200]!r}"
                           " (expected e.g. 'nix (Nix) 2.26.3'); set nix.nix_bin_dir to a Nix"
                           " build whose version line looks like that")
    impl: Implementation = "lix" if "lix" in match["impl"].lower() else "nix"
    return NixVersion(impl, int(match["major"]), int(match["minor"]),
                      int(match["patch"] or 0), line)


@dataclass(frozen=True)
class Dialect:
    """What the installed Nix accepts, and every argv of the commands we parse the output of."""

    version: NixVersion
    nix_bin_dir: str | None = None

    # -- what the commands accept ------------------------------------------------------

    @property
    def path_info_json_format(self) -> JsonFormat | None:
        """The `--json-format` we pass to `nix path-info --json` (None: no such flag).

        Format 2 where it exists: format 1 is kept only for compatibility and the default
        without the flag is deprecated.
        """
        if self.version.implementation == "nix" and self.version.at_least(*JSON_FORMAT_SINCE):
            return 2
        return None

    @property
    def config_show(self) -> tuple[str, ...]:
        if self.version.implementation == "nix" and self.version.at_least(*CONFIG_SHOW_SINCE):
            return ("config", "show")
        return ("show-config",)

    @property
    def out_paths_filled(self) -> bool:
        """Whether post-build-hook gets OUT_PATHS (Nix 2.8.0 passes it empty; 2.8.1 fixed
        it). The hook copes with both without asking; this is for reports."""
        v = self.version
        return (v.major, v.minor, v.patch) != (2, 8, 0)

    @property
    def output_selector(self) -> bool:
        """Whether `nix` commands take `DRV^out` (else a bare `DRV` means all outputs).
        Lix forked from Nix 2.18 and has it."""
        return self.version.implementation == "lix" or self.version.at_least(*CARET_SINCE)

    def installable(self, drv: str, outputs: Sequence[str] | None) -> str:
        """`drv`'s outputs (None: all) as this Nix's `nix` commands take them. Without a
        selector (Nix 2.8) it is every output: the caller filters what comes back."""
        if not self.output_selector:
            return drv
        return f"{drv}^{'*' if outputs is None else ','.join(outputs)}"

    # -- argv ------------------------------------------------------------------------------

    def program(self, name: str) -> str:
        """`nix-store`, `nix-build`, ... of the same installation."""
        return runner.nix_program(name, self.nix_bin_dir)

    def nix(self, *args: str) -> list[str]:
        """`nix ARGS` with the `nix` command enabled (experimental up to at least 2.34), so
        the daemon does not depend on the host's nix.conf turning it on."""
        return runner.nix_argv(self.nix_bin_dir, *args)

    def path_info_json(self, paths: Sequence[str], *, store: str | None = None,
                       options: Sequence[str] = ()) -> list[str]:
        """`nix path-info --json` of `paths` (in `store`, default the local one); the output
        is for `pathinfo.parse_path_infos`."""
        fmt = self.path_info_json_format
        flags = ["--json", *(("--json-format", str(fmt)) if fmt is not None else ())]
        where = ["--store", store] if store is not None else []
        return self.nix("path-info", *flags, *where, *options, *paths)

    def outputs_json(self, installables: Sequence[str]) -> list[str]:
        """The output paths of built derivations, by name (`nix build --json`, the one
        command that names them on every version, floating content-addressed outputs
        included; `nix-store -q --outputs` cannot there). Never builds or substitutes: an
        output not in the store fails the command. Output for `pathinfo.parse_built`."""
        return self.nix("build", "--json", "--no-link", "--max-jobs", "0",
                        "--option", "substitute", "false", *installables)

    def config_show_json(self) -> list[str]:
        """Nix's effective settings as JSON (for `pathinfo.parse_settings`)."""
        return self.nix(*self.config_show, "--json")

    def describe(self) -> str:
        extras = []
        if self.path_info_json_format is not None:
            extras.append(f"path-info --json-format {self.path_info_json_format}")
        extras.append(" ".join(self.config_show))
        return f"{self.version.text} ({', '.join(extras)})"


_cache: dict[str, Dialect] = {}
_lock = threading.Lock()


def _key(nix_bin_dir: str | None, env: Mapping[str, str]) -> str:
    """The Nix binary a command would run: the cache key (PATH may differ per caller)."""
    program = runner.nix_program("nix", nix_bin_dir)
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    return os.path.realpath(found) if found else program


def _remember(key: str, nix_bin_dir: str | None, stdout: str) -> Dialect:
    dialect = Dialect(parse_version(stdout), nix_bin_dir)
    with _lock:
        return _cache.setdefault(key, dialect)


def cached(nix_bin_dir: str | None, env: Mapping[str, str]) -> Dialect | None:
    with _lock:
        return _cache.get(_key(nix_bin_dir, env))


def detect(nix_bin_dir: str | None, env: Mapping[str, str]) -> Dialect:
    """The dialect of the Nix that `nix_bin_dir` (or PATH in `env`) runs; asks it once.

    A Nix that cannot be started raises OSError, as running any Nix command would."""
    key = _key(nix_bin_dir, env)
    with _lock:
        if key in _cache:
            return _cache[key]
    try:
        proc = subprocess.run(runner.nix_argv(nix_bin_dir, "--version"), env=dict(env),
                              capture_output=True, text=True, timeout=VERSION_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise DialectError(f"`nix --version` did not answer within {VERSION_TIMEOUT:g} s",
                           transient=True) from exc
    if proc.returncode != 0:
        raise DialectError(f"`nix --version` exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-300:]}")
    return _remember(key, nix_bin_dir, proc.stdout)


async def detect_async(nix_bin_dir: str | None, env: Mapping[str, str],
                       timeout: float = VERSION_TIMEOUT) -> Dialect:
    """`detect` for the daemon's event loop."""
    key = _key(nix_bin_dir, env)
    with _lock:
        if key in _cache:
            return _cache[key]
    result = await runner.run(runner.nix_argv(nix_bin_dir, "--version"), env=env,
                              timeout=min(timeout, VERSION_TIMEOUT))
    if not result.ok:
        reason = "timed out" if result.timed_out else f"exited {result.returncode}"
        raise DialectError(f"`nix --version` {reason}: {result.stderr.strip()[-300:]}",
                           transient=result.timed_out or result.returncode < 0)
    return _remember(key, nix_bin_dir, result.stdout)
