"""Work pending while the daemon is SIGKILLed and then the machine crashes: after the reboot
every path still arrives. The cache is down meanwhile, so the work really is pending."""

from __future__ import annotations

from dataclasses import dataclass

from . import steps
from .machine import Machine, Subtest, plain_subtest


@dataclass(frozen=True)
class Params:
    cache_url: str  # as the builder sees it
    public_key_file: str  # on the builder
    cache_unit: str  # on the cache machine
    kill_daemon: str  # shell command that SIGKILLs the running daemon
    build: str = "nix-build --no-out-link"
    timeout: int = 900


def run(builder: Machine, cache: Machine, p: Params,
        subtest: Subtest = plain_subtest) -> list[steps.Built]:
    with subtest("the hook's socket and the cache are up"):
        builder.wait_for_unit(steps.SOCKET_UNIT)
        cache.wait_for_unit(p.cache_unit)
    with subtest("the cache goes away, builds queue up"):
        cache.shutdown()
        built = [steps.build(builder, p.build, f"npq-crash-a{i}") for i in range(2)]
    with subtest("the daemon is killed with SIGKILL; builds go on"):
        builder.succeed(p.kill_daemon)
        built += [steps.build(builder, p.build, f"npq-crash-b{i}") for i in range(2)]
    with subtest("the machine crashes and comes back"):
        # Nix does not fsync store paths it builds; without this the crash may lose the
        # outputs themselves, which no queue can upload. The queue fsyncs on its own.
        builder.succeed("sync")
        builder.crash()
        builder.start()
        builder.wait_for_unit(steps.SOCKET_UNIT)
    with subtest("the cache comes back and every path arrives"):
        cache.start()
        cache.wait_for_unit(p.cache_unit)
        steps.wait_pushed(builder, p.cache_url, built, p.timeout)
    with subtest("delete them and substitute them back, signatures required"):
        steps.delete(builder, built)
        key = steps.public_key(builder, p.public_key_file)
        steps.substitute_back(builder, built, key, p.cache_url)
    return built
