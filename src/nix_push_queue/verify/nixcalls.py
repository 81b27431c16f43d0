"""The Nix commands `verify` runs, with the Nix's dialect, a timeout, and a step to blame.

Reads of a cache bypass Nix's narinfo disk cache and trust only the target's public key:
the local secret keys (`secret-key-files`) would otherwise vouch for the path themselves.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..config.model import Target
from ..daemon.nixerrors import summarize
from ..daemon.storeurl import TargetKeys, store_url
from ..errors import VerifyFailed
from ..nix import dialect, pathinfo, settings

# Every read of a cache must see the cache as it is now, not Nix's narinfo disk cache.
FRESH = ("--option", "narinfo-cache-negative-ttl", "0",
         "--option", "narinfo-cache-positive-ttl", "0")
COMMAND_TIMEOUT = 600.0


@dataclass(frozen=True)
class Context:
    env: Mapping[str, str]  # the environment of the Nix that builds (host or isolated)
    timeout: float  # seconds to wait for the queue to push
    write: Callable[[str], None]  # progress output; no newline is added
    nix_bin_dir: str | None = None
    enqueue: Callable[[list[str]], object] | None = None  # None: a post-build-hook queues it
    diagnose: Callable[[str], str] | None = None  # target name -> the daemon's view of it
    poll_interval: float = 0.25
    # Targets read through a local copy (s3read.py): target name -> (target, store path) ->
    # a file:// URL holding the path's closure as the target has it.
    mirrors: Mapping[str, Callable[[Target, str], str]] = field(default_factory=dict)


def trust(public_key: str) -> tuple[str, ...]:
    """Only this key is trusted; the local secret keys must not vouch for anything."""
    return ("--option", "trusted-public-keys", public_key,
            "--option", "secret-key-files", "",
            "--option", "require-sigs", "true", *FRESH)


def read_url(target: Target) -> str:
    # Never the secret key: reading needs only the ssh key (if any) and the options.
    return store_url(target, TargetKeys(ssh_key=target.ssh_key_file))


class VerifyNix:
    """One Nix installation as `verify` uses it (its dialect is asked once)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._dialect: dialect.Dialect | None = None

    @property
    def dialect(self) -> dialect.Dialect:
        if self._dialect is None:
            try:
                self._dialect = dialect.detect(self.ctx.nix_bin_dir, self.ctx.env)
            except (OSError, dialect.DialectError) as exc:
                raise VerifyFailed("setup", f"cannot tell which Nix this is: {exc}") from exc
        return self._dialect

    def program(self, name: str) -> str:
        return self.dialect.program(name)

    def run(self, step: str, argv: list[str], *, target: Target | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(self.ctx.env)
        if target is not None and target.credentials_file:
            env["AWS_SHARED_CREDENTIALS_FILE"] = target.credentials_file
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VerifyFailed(step, f"{argv[0]}: {exc}") from exc
        if check and proc.returncode != 0:
            raise VerifyFailed(step, f"{Path(argv[0]).name} exited {proc.returncode}: "
                               f"{summarize(proc.stderr)}")
        return proc

    def read_url(self, target: Target, path: str) -> str:
        """Where Nix reads `path` of `target`: the target itself, or the local copy of a
        bucket Nix cannot read (a Nix that does not sign S3 requests: s3read.py)."""
        mirror = self.ctx.mirrors.get(target.name)
        return mirror(target, path) if mirror is not None else read_url(target)

    def path_info(self, step: str, target: Target, path: str) -> pathinfo.PathInfo | None:
        """What the target's store says about `path`; None while it does not hold it.

        Output we cannot parse fails the step at once: waiting would not make it readable."""
        argv = self.dialect.path_info_json([path], store=self.read_url(target, path),
                                           options=FRESH)
        proc = self.run(step, argv, target=target, check=False)
        if proc.returncode != 0:
            return None
        try:
            infos = pathinfo.parse_path_infos(proc.stdout)
        except pathinfo.PathInfoError as exc:
            raise VerifyFailed(step, str(exc)) from exc
        return next((i for i in infos if i.path == path), None)


def hook_configured(env: Mapping[str, str], nix_bin_dir: str | None) -> str | None:
    """The post-build-hook this Nix runs, if any (then the build alone must queue the path)."""
    try:
        return settings.post_build_hook(env, nix_bin_dir)
    except settings.SettingsError as exc:
        raise VerifyFailed("setup", str(exc)) from exc
