"""A builder pushing to another machine's Nix store over ssh-ng://: the path arrives there
signed with the builder's key, and comes back from it with signatures required."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from . import steps
from .machine import Machine, Subtest, plain_subtest


@dataclass(frozen=True)
class Params:
    store_url: str  # ssh-ng://... as the builder's root sees it (with ?ssh-key=)
    public_key_file: str  # signing key's public half, on the builder
    ssh_public_key_file: str  # the builder's ssh client key, public half
    authorized_keys: str = "/root/.ssh/authorized_keys"  # on the cache machine
    build: str = "nix-build --no-out-link"
    timeout: int = 600


def run(builder: Machine, cache: Machine, p: Params,
        subtest: Subtest = plain_subtest) -> list[steps.Built]:
    with subtest("the cache machine accepts the builder's ssh key"):
        ssh_key = builder.succeed(f"cat {shlex.quote(p.ssh_public_key_file)}").strip()
        target = shlex.quote(p.authorized_keys)
        cache.succeed(f"mkdir -p -m 700 $(dirname {target})",
                      f"echo {shlex.quote(ssh_key)} >> {target}", f"chmod 600 {target}")
        cache.wait_for_unit("sshd.service")
        builder.wait_for_unit(steps.SOCKET_UNIT)
    with subtest("build; the queue copies it to the cache machine"):
        built = [steps.build(builder, p.build, "npq-ssh-ng")]
        steps.wait_pushed(builder, p.store_url, built, p.timeout)
    with subtest("it is signed there with the builder's key"):
        key = steps.public_key(builder, p.public_key_file)
        name = key.split(":", 1)[0]
        cache.succeed(f"{steps.NIX} path-info --sigs {shlex.quote(built[0].path)}"
                      f" | grep -F {shlex.quote(' ' + name + ':')}")
    with subtest("delete it on the builder and substitute it back, signatures required"):
        steps.delete(builder, built)
        steps.substitute_back(builder, built, key, p.store_url)
    return built
