"""The cache is down while the builder builds: builds succeed at once, a garbage collection
with the uploads pending deletes none of them (the queue roots them, docs/gc-roots.md), and
every path arrives once the cache is back."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from . import steps
from .machine import Machine, Subtest, plain_subtest


@dataclass(frozen=True)
class Params:
    cache_url: str  # as the builder sees it
    public_key_file: str  # on the builder
    cache_unit: str  # on the cache machine, e.g. nginx.service
    build: str = "nix-build --no-out-link"
    count: int = 3
    timeout: int = 900
    collect: str = "nix-collect-garbage"


def run(builder: Machine, cache: Machine, p: Params,
        subtest: Subtest = plain_subtest) -> list[steps.Built]:
    with subtest("the hook's socket and the cache are up"):
        builder.wait_for_unit(steps.SOCKET_UNIT)
        cache.wait_for_unit(p.cache_unit)
    with subtest("the cache goes away"):
        cache.shutdown()
    with subtest("builds succeed while the cache is unreachable"):
        built = [steps.build(builder, p.build, f"npq-outage-{i}") for i in range(p.count)]
    with subtest("a garbage collection while the uploads are pending keeps every path"):
        builder.succeed(p.collect)
        for item in built:
            builder.succeed(f"test -e {shlex.quote(item.path)}")
    with subtest("the cache comes back"):
        cache.start()
        cache.wait_for_unit(p.cache_unit)
    with subtest("every path arrives"):
        steps.wait_pushed(builder, p.cache_url, built, p.timeout)
    with subtest("delete them and substitute them back, signatures required"):
        steps.delete(builder, built)
        key = steps.public_key(builder, p.public_key_file)
        steps.substitute_back(builder, built, key, p.cache_url)
    return built
