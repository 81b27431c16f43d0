"""An isolated single-user Nix installation under one directory.

Used by `verify` on the embedded default and by the tests: each gets its own store, state,
log and config directories (Nix relocates them all by environment variables), so nothing
touches the host's /nix and tests do not see each other's paths.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import NixError

# Measured on Debian's Nix 2.8: single-user as root needs an empty build-users-group and no
# sandbox; an empty substituter list keeps builds from waiting on an unreachable default
# cache; a negative-ttl of 0 lets a test look a path up before and after it is uploaded.
BASE_CONF = """\
build-users-group =
sandbox = false
substituters =
experimental-features = nix-command
narinfo-cache-negative-ttl = 0
fsync-metadata = false
"""


@dataclass(frozen=True)
class IsolatedNix:
    root: Path

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def state_dir(self) -> Path:
        """NIX_STATE_DIR: the database, and gcroots/ that the collector reads."""
        return self.root / "var"

    @property
    def conf_dir(self) -> Path:
        return self.root / "etc"

    @property
    def conf_file(self) -> Path:
        return self.conf_dir / "nix.conf"

    @classmethod
    def create(cls, root: Path, extra_conf: str = "") -> IsolatedNix:
        nix = cls(root.resolve())
        for sub in ("store", "var", "log", "etc", "home", "cache"):
            (nix.root / sub).mkdir(parents=True, exist_ok=True)
        nix.conf_file.write_text(BASE_CONF + extra_conf, encoding="utf-8")
        return nix

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env.update(
            NIX_CONF_DIR=str(self.conf_dir),
            NIX_STORE_DIR=str(self.store_dir),
            NIX_STATE_DIR=str(self.state_dir),
            NIX_LOG_DIR=str(self.root / "log"),
            HOME=str(self.root / "home"),
            # Nix keeps its narinfo cache under XDG_CACHE_HOME: share it and tests leak.
            XDG_CACHE_HOME=str(self.root / "cache"),
        )
        env.pop("NIX_REMOTE", None)
        env.pop("NIX_PATH", None)
        return env

    def run(self, argv: Sequence[str], *, input: str | None = None,
            timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(argv), env=self.env(), input=input, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise NixError(list(argv), proc.returncode, proc.stderr)
        return proc

    def build_expr(self, expr: str, *, timeout: float = 300) -> list[Path]:
        """Build a Nix expression with `nix-build --no-out-link`; return its output paths."""
        proc = self.run(["nix-build", "--no-out-link", "-E", expr], timeout=timeout)
        return [Path(line) for line in proc.stdout.split() if line]

    def generate_key(self, name: str, directory: Path) -> tuple[Path, str]:
        """A fresh signing key pair; returns (secret key file, public key text)."""
        secret, public = directory / f"{name}.sec", directory / f"{name}.pub"
        self.run(["nix-store", "--generate-binary-cache-key", name, str(secret), str(public)])
        secret.chmod(0o600)
        return secret, public.read_text("utf-8").strip()


def shell_derivation(name: str, script: str, *, attrs: Mapping[str, str] | None = None,
                     deps: Sequence[str] = ()) -> str:
    """A Nix expression for a derivation that needs no nixpkgs: `/bin/sh -c script`.

    `attrs` become environment variables of the build; `deps` are other expressions whose
    outputs are appended to `$out` as `$dep0`, `$dep1`, ..., so they become references.
    Shell variables are written `$name`, never `${name}`: in a Nix string `${` interpolates.
    """
    script += "".join(f"; echo $dep{i} >> $out" for i in range(len(deps)))
    env = " ".join(f"{key} = {json.dumps(value)};" for key, value in (attrs or {}).items())
    dep_attrs = " ".join(f"dep{i} = {d};" for i, d in enumerate(deps))
    return (
        "builtins.derivation { "
        f"name = {json.dumps(name)}; system = builtins.currentSystem; "
        f"builder = \"/bin/sh\"; args = [ \"-c\" {json.dumps(script)} ]; "
        f"{env} {dep_attrs} }}"
    )


def text_derivation(name: str, content: str, *, deps: Sequence[str] = ()) -> str:
    """A derivation whose output is `content`, then the paths of `deps` (its references)."""
    return shell_derivation(name, 'printf %s "$content" > $out',
                            attrs={"content": content}, deps=deps)
