"""One machine pushing to a file:// binary cache: build, pushed signed, delete, substitute."""

from __future__ import annotations

from dataclasses import dataclass

from . import steps
from .machine import Machine, Subtest, plain_subtest


@dataclass(frozen=True)
class Params:
    cache_url: str  # the target's URL, also used to look the path up and substitute
    public_key_file: str  # on the machine
    build: str = "nix-build --no-out-link"
    timeout: int = 600


def run(machine: Machine, p: Params, subtest: Subtest = plain_subtest) -> list[steps.Built]:
    with subtest("the hook's socket is listening"):
        machine.wait_for_unit(steps.SOCKET_UNIT)
    with subtest("build a fresh derivation with the hook configured"):
        built = [steps.build(machine, p.build, "npq-file-cache")]
    with subtest("the queue pushes it to the cache"):
        steps.wait_pushed(machine, p.cache_url, built, p.timeout)
    with subtest("delete it locally"):
        steps.delete(machine, built)
    with subtest("substitute it back, signatures required"):
        key = steps.public_key(machine, p.public_key_file)
        steps.substitute_back(machine, built, key, p.cache_url)
    return built
