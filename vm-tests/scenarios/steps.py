"""Steps every scenario is made of: build a fresh derivation, wait until the queue has pushed
it, delete it, refuse it with a wrong key, substitute it back with signatures required.
"""

from __future__ import annotations

import json
import secrets
import shlex
from dataclasses import dataclass

from .machine import Machine

NIX = "nix --extra-experimental-features nix-command"
SOCKET_UNIT = "nix-push-queue.socket"
# A well-formed public key whose secret half nobody has: substituting with only this key
# trusted must fail, which proves the real key's signature is what lets a path in.
UNTRUSTED_KEY = "nobody-1:" + "A" * 43 + "="


@dataclass(frozen=True)
class Built:
    path: str
    content: str


def derivation(name: str, content: str) -> str:
    """A derivation that needs no nixpkgs (/bin/sh is in every Nix sandbox)."""
    script = 'printf %s "$content" > $out'
    return (
        f"builtins.derivation {{ name = {json.dumps(name)}; system = builtins.currentSystem;"
        f' builder = "/bin/sh"; args = [ "-c" {json.dumps(script)} ];'
        f" content = {json.dumps(content)}; }}"
    )


def build(machine: Machine, build_command: str, name: str) -> Built:
    """Build a derivation no cache can have (fresh content); the hook sees it."""
    content = f"{name} {secrets.token_hex(16)}"
    expr = derivation(name, content)
    out = machine.succeed(f"{build_command} -E {shlex.quote(expr)}", timeout=600)
    lines = [line for line in out.split() if line.startswith("/")]
    if not lines:
        raise AssertionError(f"{machine.name}: no output path from the build: {out!r}")
    return Built(lines[-1], content)


def in_cache(url: str, path: str) -> str:
    """Shell test: is `path` in the store at `url`? (negative lookups not cached)."""
    return (f"{NIX} path-info --option narinfo-cache-negative-ttl 0"
            f" --store {shlex.quote(url)} {shlex.quote(path)}")


def wait_pushed(machine: Machine, url: str, built: list[Built], timeout: int = 600) -> None:
    for item in built:
        machine.wait_until_succeeds(in_cache(url, item.path), timeout=timeout)


def public_key(machine: Machine, key_file: str) -> str:
    return machine.succeed(f"cat {shlex.quote(key_file)}").strip()


def delete(machine: Machine, built: list[Built]) -> None:
    """The queue holds a GC root on each path until it has recorded the upload, a moment
    after the cache shows the path (docs/gc-roots.md): until then Nix refuses the delete."""
    paths = " ".join(shlex.quote(b.path) for b in built)
    machine.wait_until_succeeds(f"nix-store --delete {paths}", timeout=60)
    for item in built:
        machine.fail(f"test -e {shlex.quote(item.path)}")


def realise(path: str, key: str, url: str | None) -> str:
    """Substitute `path` trusting only `key`; `url` None: the host's configured substituters."""
    options = [
        ("trusted-public-keys", key),
        ("require-sigs", "true"),
        ("narinfo-cache-negative-ttl", "0"),
    ]
    if url is not None:
        options.insert(0, ("substituters", url))
    flags = " ".join(f"--option {k} {shlex.quote(v)}" for k, v in options)
    return f"nix-store --realise {shlex.quote(path)} {flags}"


def substitute_back(machine: Machine, built: list[Built], key: str, url: str | None) -> None:
    """A wrong key is refused; the right one brings back the same content."""
    machine.fail(realise(built[0].path, UNTRUSTED_KEY, url))
    for item in built:
        machine.succeed(realise(item.path, key, url))
        got = machine.succeed(f"cat {shlex.quote(item.path)}")
        if got != item.content:
            raise AssertionError(f"{item.path}: substituted content {got!r} != {item.content!r}")
