"""`verify`: the Nix manual's post-build-hook test procedure, step by step, against real Nix.

Build a fresh derivation (unique content, no nixpkgs), wait until the queue has pushed it to
each target, check the signature with Nix as the judge (only the target's public key trusted,
never `secret-key-files`, which would make the local key trusted), delete the path locally,
substitute it back with signatures required, and compare the content. A failing step raises
VerifyFailed(step, reason).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from ..client.control import ControlClient
from ..config.model import Config, Target
from ..daemon.uploader import TargetKeys, redact, store_url, summarize
from ..errors import NpqError, VerifyFailed
from ..nix.isolated import text_derivation
from ..nix.runner import nix_argv, nix_program

# Every read of a cache must see the cache as it is now, not Nix's narinfo disk cache.
FRESH = ("--option", "narinfo-cache-negative-ttl", "0",
         "--option", "narinfo-cache-positive-ttl", "0")
COMMAND_TIMEOUT = 600.0
T = TypeVar("T")
STEPS_PER_TARGET = 5


@dataclass(frozen=True)
class Context:
    env: Mapping[str, str]  # the environment of the Nix that builds (host or isolated)
    timeout: float  # seconds to wait for the queue to push
    write: Callable[[str], None]  # progress output; no newline is added
    nix_bin_dir: str | None = None
    enqueue: Callable[[list[str]], object] | None = None  # None: a post-build-hook queues it
    diagnose: Callable[[str], str] | None = None  # target name -> the daemon's view of it
    poll_interval: float = 0.25


@dataclass(frozen=True)
class Built:
    path: str
    content: str
    nar_hash: str


class Procedure:
    def __init__(self, ctx: Context, targets: Sequence[Target]) -> None:
        self.ctx = ctx
        self.targets = tuple(targets)
        self._total = 1 + STEPS_PER_TARGET * len(self.targets)
        self._done = 0

    def run(self) -> Built:
        if not self.targets:
            raise VerifyFailed("setup", "the config has no targets to verify")
        built = self._step("build", "build a fresh derivation", self.build)
        self.ctx.write(f"      {built.path}\n")
        for t in self.targets:
            self._step("push", f"wait until {t.name} has it", partial(self.wait_pushed, t, built))
            self._step("signature", f"check the signature with {t.name}'s public key",
                       partial(self.check_signature, t, built))
            self._step("delete", "delete it locally", partial(self.delete, built))
            self._step("substitute", f"substitute it back from {t.name}",
                       partial(self.substitute, t, built))
            self._step("compare", "compare the content", partial(self.compare, built))
        return built

    def _step(self, name: str, label: str, action: Callable[[], T]) -> T:
        self._done += 1
        self.ctx.write(f"[{self._done}/{self._total}] {label} ... ")
        started = time.monotonic()
        try:
            result = action()
        except VerifyFailed:
            self.ctx.write(f"FAILED ({time.monotonic() - started:.2f} s)\n")
            raise
        except Exception as exc:
            self.ctx.write(f"FAILED ({time.monotonic() - started:.2f} s)\n")
            raise VerifyFailed(name, f"{type(exc).__name__}: {exc}") from exc
        self.ctx.write(f"ok ({time.monotonic() - started:.2f} s)\n")
        return result

    # -- steps ---------------------------------------------------------------------------

    def build(self) -> Built:
        nonce = secrets.token_hex(16)
        content = f"nix-push-queue verify {nonce}\n"
        expr = text_derivation(f"npq-verify-{nonce[:8]}", content)
        out = self._nix("build", [self._prog("nix-build"), "--no-out-link", "-E", expr])
        path = out.stdout.strip().splitlines()[-1]
        nar_hash = self._nix("build", [self._prog("nix-store"), "--query", "--hash", path])
        if self.ctx.enqueue is not None:
            self.ctx.enqueue([path])
        return Built(path, content, nar_hash.stdout.strip())

    def wait_pushed(self, target: Target, built: Built) -> None:
        deadline = time.monotonic() + self.ctx.timeout
        while self._path_info(target, built) is None:
            if time.monotonic() > deadline:
                view = self.ctx.diagnose(target.name) if self.ctx.diagnose else ""
                raise VerifyFailed("push", f"{built.path} is not in {target.name} after "
                                   f"{self.ctx.timeout:g} s" + (f"; daemon: {view}" if view
                                                                 else ""))
            time.sleep(self.ctx.poll_interval)

    def check_signature(self, target: Target, built: Built) -> None:
        if not target.public_key:
            raise VerifyFailed("signature", f"target {target.name} has no public_key; add it "
                               "to the config so consumers (and verify) can check signatures")
        proc = self._nix("signature", nix_argv(
            self.ctx.nix_bin_dir, "store", "verify", "--no-contents",
            "--store", self._read_url(target), *self._trust(target.public_key), built.path),
            target=target, check=False)
        if proc.returncode != 0:
            names = sorted({s.partition(":")[0] for s in self.cache_signatures(target, built)})
            raise VerifyFailed("signature", f"no valid signature by {target.key_name} on "
                               f"{built.path} in {target.name} (signed by: "
                               f"{', '.join(names) or 'nobody'}): {summarize(proc.stderr)}")

    def delete(self, built: Built) -> None:
        self._nix("delete", [self._prog("nix-store"), "--delete", built.path])
        if Path(built.path).exists():
            raise VerifyFailed("delete", f"{built.path} still exists after nix-store --delete")

    def substitute(self, target: Target, built: Built) -> None:
        key = target.public_key or ""
        if target.is_binary_cache:
            argv = [self._prog("nix-store"), "--realise", built.path,
                    "--option", "substituters", self._read_url(target), *self._trust(key)]
        else:
            argv = nix_argv(self.ctx.nix_bin_dir, "copy", "--from", self._read_url(target),
                            built.path, *self._trust(key))
        self._nix("substitute", argv, target=target)

    def compare(self, built: Built) -> None:
        try:
            content = Path(built.path).read_text(encoding="utf-8")
        except OSError as exc:
            raise VerifyFailed("compare", f"cannot read {built.path}: {exc}") from exc
        if content != built.content:
            raise VerifyFailed("compare", f"{built.path} came back with different content")
        nar_hash = self._nix("compare", [self._prog("nix-store"), "--query", "--hash",
                                         built.path]).stdout.strip()
        if nar_hash != built.nar_hash:
            raise VerifyFailed("compare", f"NAR hash {nar_hash} != {built.nar_hash}")

    # -- helpers -------------------------------------------------------------------------

    def cache_signatures(self, target: Target, built: Built) -> list[str]:
        """Signatures on the target's narinfo for the path; [] while it is not there."""
        info = self._path_info(target, built)
        sigs = info.get("signatures") if info else None
        return [str(s) for s in sigs] if isinstance(sigs, list) else []

    def _path_info(self, target: Target, built: Built) -> dict[str, object] | None:
        proc = self._nix("push", nix_argv(
            self.ctx.nix_bin_dir, "path-info", "--json", "--store", self._read_url(target),
            *FRESH, built.path), target=target, check=False)
        if proc.returncode != 0:
            return None
        try:
            infos = json.loads(proc.stdout)
        except json.JSONDecodeError:
            return None
        info = infos[0] if isinstance(infos, list) and infos else None
        return info if isinstance(info, dict) and info.get("narHash") else None

    def _trust(self, public_key: str) -> tuple[str, ...]:
        """Only this key is trusted; the local secret keys must not vouch for anything."""
        return ("--option", "trusted-public-keys", public_key,
                "--option", "secret-key-files", "",
                "--option", "require-sigs", "true", *FRESH)

    def _read_url(self, target: Target) -> str:
        # Never the secret key: reading needs only the ssh key (if any) and the options.
        return store_url(target, TargetKeys(ssh_key=target.ssh_key_file))

    def _env(self, target: Target | None = None) -> dict[str, str]:
        env = dict(self.ctx.env)
        if target is not None and target.credentials_file:
            env["AWS_SHARED_CREDENTIALS_FILE"] = target.credentials_file
        return env

    def _prog(self, name: str) -> str:
        return nix_program(name, self.ctx.nix_bin_dir)

    def _nix(self, step: str, argv: list[str], *, target: Target | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(argv, env=self._env(target), capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise VerifyFailed(step, f"{argv[0]}: {exc}") from exc
        if check and proc.returncode != 0:
            raise VerifyFailed(step, f"{Path(argv[0]).name} exited {proc.returncode}: "
                               f"{summarize(proc.stderr)}")
        return proc


def describe_target(target: Target) -> str:
    return f"target {target.name} ({redact(target.url)})"


def hook_configured(env: Mapping[str, str], nix_bin_dir: str | None) -> bool:
    """Whether this Nix runs a post-build-hook (then the build alone must queue the path)."""
    argv = nix_argv(nix_bin_dir, "show-config", "--json")
    try:
        proc = subprocess.run(argv, env=dict(env), capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, check=False)
        value = json.loads(proc.stdout)["post-build-hook"]["value"]
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError) as exc:
        raise VerifyFailed("setup", f"cannot read Nix's settings: {exc}") from exc
    return bool(str(value).strip())


def daemon_view(client: ControlClient, target: str) -> str:
    """One line on what the daemon says about a target (for a push that never arrived)."""
    try:
        stats = client.status().get(target)
    except NpqError as exc:
        return f"status failed: {exc}"
    if stats is None:
        return f"the daemon has no target {target!r}"
    return (f"pending {stats.pending}, in flight {stats.inflight}, done {stats.done}, "
            f"dead {stats.dead}, last error: {stats.last_error or '-'}")


def run_with_config(config: Config, names: Sequence[str], env: Mapping[str, str], *,
                    timeout: float, write: Callable[[str], None]) -> None:
    """The procedure on this host's Nix and daemon, for the named targets (all if none)."""
    targets = [t for t in config.targets if not names or t.name in names]
    unknown = sorted(set(names) - {t.name for t in config.targets})
    if unknown:
        raise VerifyFailed("setup", f"no target named {', '.join(unknown)} in the config "
                           f"(targets: {', '.join(t.name for t in config.targets) or 'none'})")
    client = ControlClient(config.queue.socket)
    try:
        client.ping()
    except NpqError as exc:
        raise VerifyFailed("setup", f"{exc}; is the daemon running?") from exc
    hooked = hook_configured(env, config.nix.nix_bin_dir)
    write("post-build-hook configured: the build queues the path\n" if hooked else
          "no post-build-hook in nix.conf: the path is queued with the push op\n")
    for target in targets:
        write(f"{describe_target(target)}\n")
    ctx = Context(env=env, timeout=timeout, write=write, nix_bin_dir=config.nix.nix_bin_dir,
                  enqueue=None if hooked else lambda paths: client.enqueue(paths, "push"),
                  diagnose=lambda name: daemon_view(client, name))
    Procedure(ctx, targets).run()
