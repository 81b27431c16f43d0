"""Which kinds of store the Nix in use can open: S3 is the one that varies by build.

Measured on Debian's packages: Nix 2.8.0 and 2.26.3 are built without the S3 store
(`don't know how to open Nix store 's3://...'`, resp. `... with scheme 's3'`), 2.34.8 with it.
Nix lists the stores it was built with, so the answer needs no network and no bucket:

1. `nix __dump-cli` (2.26 and 2.34 here): a JSON object whose `stores` maps store names
   ("S3 Binary Cache Store", ...) to their settings;
2. `nix describe-stores --json` (2.8 here; gone by 2.26): the same map at top level;
3. otherwise (another build, Lix, a future Nix), opening an `s3://` store tells: a Nix
   without S3 refuses it at once; one with S3 gets past opening and fails to reach the
   endpoint, a closed port on the loopback.

When none of these answers, S3 counts as supported: the upload then says what is wrong.

A Nix can also have the S3 store without AWS authentication: Debian's 2.34.8 says, at debug
level, "S3 request without authentication (built without AWS support)" before each request,
ignores every credential (environment, `AWS_SHARED_CREDENTIALS_FILE`, ~/.aws) and sends
unsigned requests, which only a bucket open to anonymous writes accepts. The same probe (3,
with `-vvvv`) shows that line.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from . import dialect, runner

log = logging.getLogger(__name__)

S3_STORE = "S3 Binary Cache Store"
PROBE_TIMEOUT = 30.0
# Port 9 (discard) on the loopback: nothing listens there on the machines we know, and a
# connection refused there never leaves the host.
PROBE_URL = "s3://nix-push-queue-probe?endpoint=http://127.0.0.1:9&region=us-east-1"
_REFUSED = "don't know how to open nix store"
_UNSIGNED = "without authentication"

Method = Literal["__dump-cli", "describe-stores", "probe", "none"]
# `__dump-cli` is recognised only as nix's sole argument (no --extra-experimental-features).
_LISTINGS: tuple[tuple[Method, bool, tuple[str, ...]], ...] = (
    ("__dump-cli", False, ("__dump-cli",)),
    ("describe-stores", True, ("describe-stores", "--json")),
)


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


@dataclass(frozen=True)
class S3Support:
    supported: bool
    nix: str  # the first line of `nix --version`, or the program when that failed
    method: Method  # which command told
    signed: bool | None = None  # requests signed with AWS credentials (None: not known)

    def reason(self) -> str:
        """Why a target cannot be served, for logs, status and dead letters."""
        return (f"this Nix ({self.nix}) was built without S3 support and cannot open "
                "s3:// stores")

    def unsigned_reason(self) -> str:
        return (f"this Nix ({self.nix}) opens s3:// stores but was built without AWS "
                "authentication: it ignores credentials (credentials_file too) and sends "
                "unsigned requests, which a bucket that needs credentials refuses")


def _run(argv: list[str], env: Mapping[str, str], timeout: float
         ) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, env=dict(env), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("%s: %s", argv[0], exc)
        return None


def _store_names(doc: Any) -> set[str] | None:
    """Store names from `__dump-cli` (under `stores`) or `describe-stores --json` (top)."""
    if isinstance(doc, dict) and isinstance(doc.get("stores"), dict):
        doc = doc["stores"]
    if not isinstance(doc, dict) or not doc:
        return None
    return {str(name) for name in doc}


def listed_stores(output: str) -> set[str] | None:
    """The store names in a Nix CLI description; None when it is not one."""
    try:
        return _store_names(json.loads(output))
    except ValueError:
        return None


def nix_version_line(nix_bin_dir: str | None, env: Mapping[str, str]) -> str:
    """`nix (Nix) 2.26.3` for messages (dialect.py asks and remembers), else the program."""
    try:
        return dialect.detect(nix_bin_dir, env).version.text
    except (dialect.DialectError, OSError):
        return runner.nix_program("nix", nix_bin_dir)


def s3_support(nix_bin_dir: str | None, env: Mapping[str, str],
               timeout: float = PROBE_TIMEOUT) -> S3Support:
    """Ask the Nix at `nix_bin_dir` (PATH when None) whether it can open s3:// stores."""
    version = nix_version_line(nix_bin_dir, env)
    probe = _run(runner.nix_argv(nix_bin_dir, "store", "ping", "-vvvv", "--store", PROBE_URL,
                                 "--option", "download-attempts", "1"), env, timeout)
    probed = probe.stderr.lower() if probe is not None else None
    signed = None if probed is None else _UNSIGNED not in probed
    for method, needs_feature, args in _LISTINGS:
        argv = (runner.nix_argv(nix_bin_dir, *args) if needs_feature
                else [runner.nix_program("nix", nix_bin_dir), *args])
        proc = _run(argv, env, timeout)
        names = listed_stores(proc.stdout) if proc is not None and proc.returncode == 0 else None
        if names is not None:
            supported = S3_STORE in names
            return S3Support(supported, version, method, signed if supported else None)
    if probed is None:
        return S3Support(True, version, "none")
    supported = _REFUSED not in probed
    return S3Support(supported, version, "probe", signed if supported else None)


def is_s3(target: HasUrl) -> bool:
    return target.url.startswith("s3://")
