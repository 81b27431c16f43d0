"""A host that only substitutes: no hook, no daemon; it gets the builder's pushed path from
its configured substituters, trusting the builder's key."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from . import steps
from .machine import Machine, Subtest, plain_subtest


@dataclass(frozen=True)
class Params:
    push_url: str  # the builder's target, as the builder sees it
    public_key_file: str  # on the builder
    build: str = "nix-build --no-out-link"
    timeout: int = 600


def run(builder: Machine, consumer: Machine, p: Params,
        subtest: Subtest = plain_subtest) -> list[steps.Built]:
    with subtest("the consumer has no post-build-hook"):
        hook = consumer.succeed(
            f"{steps.NIX} show-config | sed -n 's/^post-build-hook = //p'").strip()
        if hook:
            raise AssertionError(f"consumer has post-build-hook = {hook}")
    with subtest("the builder builds and pushes"):
        builder.wait_for_unit(steps.SOCKET_UNIT)
        built = [steps.build(builder, p.build, "npq-consumer")]
        steps.wait_pushed(builder, p.push_url, built, p.timeout)
    with subtest("the consumer substitutes it from its configured cache"):
        consumer.fail(f"test -e {shlex.quote(built[0].path)}")
        key = steps.public_key(builder, p.public_key_file)
        steps.substitute_back(consumer, built, key, url=None)
    return built
