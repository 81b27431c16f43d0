"""`verify`: the Nix manual's post-build-hook test procedure, step by step, against real Nix.

The steps are in steps.py and the Nix commands in nixcalls.py; this module orders them,
prints `[n/total] label ... ok (seconds)` for each, and sets them up for a configured host.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

from .. import trust
from ..client.control import ControlClient
from ..config.model import Config, Target
from ..daemon.nixerrors import redact
from ..errors import NpqError, VerifyFailed
from .nixcalls import Context, hook_configured
from .s3read import mirrors
from .steps import Built, Steps

__all__ = ["Built", "Context", "Procedure", "daemon_view", "describe_target",
           "hook_configured", "queue_waiter", "run_with_config"]

T = TypeVar("T")
STEPS_PER_TARGET = 5


class Procedure(Steps):
    def __init__(self, ctx: Context, targets: Sequence[Target],
                 queue_wait: Callable[[str], object] | None = None) -> None:
        """`queue_wait(path)`: wait for the daemon to have the built path on every target
        (ahead of its backlog, showing progress) before each target's cache is asked."""
        super().__init__(ctx)
        self.targets = tuple(targets)
        self.queue_wait = queue_wait
        self._total = 1 + (queue_wait is not None) + STEPS_PER_TARGET * len(self.targets)
        self._done = 0

    def run(self) -> Built:
        if not self.targets:
            raise VerifyFailed("setup", "the config has no targets to verify")
        built = self._step("build", "build a fresh derivation", self.build)
        self.ctx.write(f"      {built.path}\n")
        if self.queue_wait is not None:
            self._step("queue", "wait until the queue has uploaded it",
                       partial(self.queue_wait, built.path), block=True)
        for t in self.targets:
            self._step("push", f"wait until {t.name} has it", partial(self.wait_pushed, t, built))
            self._step("signature", f"check the signature with {t.name}'s public key",
                       partial(self.check_signature, t, built))
            self._step("delete", "delete it locally", partial(self.delete, built))
            self._step("substitute", f"substitute it back from {t.name}",
                       partial(self.substitute, t, built))
            self._step("compare", "compare the content", partial(self.compare, built))
        return built

    def _step(self, name: str, label: str, action: Callable[[], T], *,
              block: bool = False) -> T:
        """`block`: the action prints lines of its own (progress), so the label gets a line
        of its own and is repeated before the outcome."""
        self._done += 1
        head = f"[{self._done}/{self._total}] {label} ..."
        self.ctx.write(f"{head}\n" if block else f"{head} ")
        outcome = f"{head} " if block else ""
        started = time.monotonic()
        try:
            result = action()
        except VerifyFailed:
            self.ctx.write(f"{outcome}FAILED ({time.monotonic() - started:.2f} s)\n")
            raise
        except Exception as exc:
            self.ctx.write(f"{outcome}FAILED ({time.monotonic() - started:.2f} s)\n")
            raise VerifyFailed(name, f"{type(exc).__name__}: {exc}") from exc
        self.ctx.write(f"{outcome}ok ({time.monotonic() - started:.2f} s)\n")
        return result


def describe_target(target: Target) -> str:
    return f"target {target.name} ({redact(target.url)})"


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


def queue_waiter(client: ControlClient, targets: Sequence[Target], env: Mapping[str, str],
                 timeout: float) -> Callable[[str], object]:
    """Procedure's `queue_wait`: the daemon's `progress` op for the built path on the
    verified targets, prioritized, with a progress view on stderr."""
    def wait(path: str) -> object:
        from ..client.progressview import from_paths, open_view
        from ..client.waitpaths import wait_paths

        view = open_view(sys.stderr, "verify", env)
        try:
            return wait_paths(client, [path], timeout=timeout, targets={t.name for t in targets},
                              on_poll=lambda r: view.update(
                                  [from_paths(n, p) for n, p in sorted(r.targets.items())]))
        finally:
            view.close()
    return wait


def check_trust(config: Config, config_file: str | None, hook: str | None,
                write: Callable[[str], None]) -> None:
    """The host's trust check (docs/security.md): what root runs as the hook, and the
    daemon's config, keys and queue directories. A problem fails `verify`."""
    report = trust.check(trust.Subjects(config=config, config_file=config_file, wrapper=hook),
                         trust.owners_for(config))
    write(f"{report.summary()}\n")
    for note in report.notes:
        write(f"trust: note: {note}\n")
    if not report.ok:
        raise VerifyFailed("trust", "\n".join(str(f) for f in report.findings))


def run_with_config(config: Config, names: Sequence[str], env: Mapping[str, str], *,
                    timeout: float, write: Callable[[str], None],
                    config_file: str | None = None) -> None:
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
    check_trust(config, config_file, hooked, write)
    write("post-build-hook configured: the build queues the path\n" if hooked else
          "no post-build-hook in nix.conf: the path is queued with the push op\n")
    for target in targets:
        write(f"{describe_target(target)}\n")
    with mirrors(config, targets, env, write) as reads:
        ctx = Context(env=env, timeout=timeout, write=write,
                      nix_bin_dir=config.nix.nix_bin_dir,
                      enqueue=None if hooked else lambda paths: client.enqueue(paths, "push"),
                      diagnose=lambda name: daemon_view(client, name), mirrors=reads)
        Procedure(ctx, targets, queue_waiter(client, targets, env, timeout)).run()
