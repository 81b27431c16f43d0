"""A builder pushing to another machine's Nix store over ssh-ng://: the path arrives there
signed with the builder's key, and comes back from it with signatures required.

The cache machine must trust the builder's signing key: `nix copy` asks the receiving store
to check signatures, and even a trusted (root) ssh session gets "lacks a valid signature"
for a path signed by a key that store does not trust. The builder's key is made at run time,
so the scenario adds it to a nix.conf fragment the cache machine's Nix reads (`trust_conf`).
"""

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
    trust_conf: str  # on the cache machine: a nix.conf (or a file its nix.conf includes)
    authorized_keys: str = "/root/.ssh/authorized_keys"  # on the cache machine
    build: str = "nix-build --no-out-link"
    timeout: int = 600


def run(builder: Machine, cache: Machine, p: Params,
        subtest: Subtest = plain_subtest) -> list[steps.Built]:
    with subtest("the cache machine accepts the builder's ssh key and trusts its signing key"):
        ssh_key = builder.succeed(f"cat {shlex.quote(p.ssh_public_key_file)}").strip()
        target = shlex.quote(p.authorized_keys)
        cache.succeed(f"mkdir -p -m 700 $(dirname {target})",
                      f"echo {shlex.quote(ssh_key)} >> {target}", f"chmod 600 {target}")
        key = steps.public_key(builder, p.public_key_file)
        conf = shlex.quote(p.trust_conf)
        cache.succeed(f"mkdir -p $(dirname {conf})",
                      f"echo {shlex.quote('extra-trusted-public-keys = ' + key)} >> {conf}")
        cache.wait_for_unit("sshd.service")
        builder.wait_for_unit(steps.SOCKET_UNIT)
    with subtest("build; the queue copies it to the cache machine"):
        built = [steps.build(builder, p.build, "npq-ssh-ng")]
        steps.wait_pushed(builder, p.store_url, built, p.timeout)
    with subtest("it is signed there with the builder's key"):
        name = key.split(":", 1)[0]
        # Path and signatures are separated by a tab (Nix 2.8) or spaces (newer Nix).
        cache.succeed(f"{steps.NIX} path-info --sigs {shlex.quote(built[0].path)}"
                      f" | tr '\\t' ' ' | grep -F {shlex.quote(' ' + name + ':')}")
    with subtest("delete it on the builder and substitute it back, signatures required"):
        steps.delete(builder, built)
        steps.substitute_back(builder, built, key, p.store_url)
    return built
