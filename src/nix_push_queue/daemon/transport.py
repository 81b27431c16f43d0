"""How a planned batch reaches a target: the transport seam of the uploader.

The uploader (uploader.py) decides *what* to send: it drops excluded and upstream-signed paths,
finds what is gone, signs store targets. A transport decides *how* the chosen paths travel:
`NixCopyTransport` runs `nix copy --to URL` straight at the target; the staged S3 transport
(daemon/s3/) lets Nix write a `file://` cache and carries the files itself. Each raises
`UploadFailed` with its classification, and returns how many store paths the target was missing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..config.model import Filters, Target
from ..nix import dialect, runner, stores
from .storeurl import TargetKeys, store_url

_COPIED = re.compile(r"^copying (\d+) paths", re.MULTILINE)

# Uploads over HTTP (issue 22, measured with Nix 2.8 against a test server): Nix retries a
# PUT answered 408/429/500/503 itself, and the retried PUT sends no body, so each retry
# hangs until `stalled-download-timeout` (300 s): one `nix copy` held an upload slot for
# 20 minutes or more, and a PUT that stalls outright for 5 x 300 s. The queue retries with
# its own backoff, so Nix tries once (a 503 then fails in 0.1 s), and a transfer that moves
# no byte for STALL_TIMEOUT seconds is a failure however large the upload (15 s with 10).
STALL_TIMEOUT = 60
# And Nix remembers for 30 days that a cache has a path (its narinfo disk cache): after
# the cache lost it, `nix copy` skipped the upload of a path queued again (issue 22).
HTTP_UPLOAD_OPTIONS = ("--option", "download-attempts", "1",
                       "--option", "stalled-download-timeout", str(STALL_TIMEOUT),
                       "--option", "narinfo-cache-positive-ttl", "0")


class NixRun(Protocol):
    """The uploader's way to run one Nix command: classified, bounded by `deadline`, and
    raising `UploadFailed` unless it succeeded."""

    def __call__(self, argv: list[str], deadline: float, keys: TargetKeys,
                 what: str) -> Awaitable[runner.CmdResult]: ...


class Transport(Protocol):
    async def send(self, target: Target, keys: TargetKeys, roots: Sequence[str],
                   deadline: float) -> int: ...


class NixCopyTransport:
    """`nix copy --to URL ROOTS...`: Nix talks to the target itself (any store URL)."""

    def __init__(self, nix: dialect.Dialect, run: NixRun, filters: Filters) -> None:
        self._nix = nix
        self._run = run
        self._filters = filters

    async def send(self, target: Target, keys: TargetKeys, roots: Sequence[str],
                   deadline: float) -> int:
        flags = []
        if self._filters.skip_signed_by and not target.is_binary_cache:
            # Let the remote store fetch upstream paths from its own substituters.
            flags = ["--substitute-on-destination"]
        if any(not storepath_like(r) for r in roots):
            # Derivation installables: copy what is built, never build or substitute it.
            flags += ["--max-jobs", "0", "--option", "substitute", "false"]
        if target.scheme in ("http", "https", "s3"):  # Nix's curl-based stores
            flags += HTTP_UPLOAD_OPTIONS
        argv = self._nix.nix("copy", *flags, "--to", store_url(target, keys), *roots)
        result = await self._run(argv, deadline, keys, "nix copy")
        # "copying N paths..." counts what the target was missing, closure included.
        match = _COPIED.search(result.stderr)
        return int(match.group(1)) if match else len(roots)


TransportName = Literal["nix", "boto3"]


@dataclass(frozen=True)
class Choice:
    """Which transport a target uses, and why (for validate, status and the start log)."""

    name: TransportName
    why: str

    def __str__(self) -> str:
        return f"{self.name} ({self.why})"


def choose(target: Target, support: stores.S3Support | None) -> Choice:
    """The target's `transport` resolved: `auto` takes `nix copy` straight to S3 only where
    this Nix signs S3 requests (nix/stores.py), and the staged boto3 transport otherwise."""
    if not stores.is_s3(target):
        return Choice("nix", "nix copy --to the target's URL")
    if target.transport != "auto":
        return Choice(target.transport, f"the target's transport is {target.transport}")
    if support is None:
        return Choice("boto3", "auto: this Nix's S3 support is not known")
    if not support.supported:
        return Choice("boto3", f"auto: this Nix ({support.nix}) has no S3 store")
    signs = {True: ("nix", "signs S3 requests"), False: ("boto3", "sends unsigned S3 requests"),
             None: ("boto3", "may not sign S3 requests (not known)")}
    name, why = signs[support.signed]
    return Choice("nix" if name == "nix" else "boto3", f"auto: this Nix ({support.nix}) {why}")


def choose_all(targets: Sequence[Target], nix_bin_dir: str | None, env: Mapping[str, str]
               ) -> tuple[stores.S3Support | None, dict[str, Choice]]:
    """Every target's Choice; Nix is asked about S3 only when a target needs the answer."""
    asks = any(stores.is_s3(t) and t.transport in ("auto", "nix") for t in targets)
    support = stores.s3_support(nix_bin_dir, env) if asks else None
    return support, {t.name: choose(t, support) for t in targets}


def boto3_missing() -> str | None:
    """Why the boto3 transport cannot run here (boto3 not installed), or None."""
    try:
        import boto3  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return ("boto3 is not installed: install nix-push-queue with its `s3` extra "
                "(pip install 'nix-push-queue[s3]'), or use a Nix that signs S3 requests "
                "with transport: nix")
    return None


def storepath_like(root: str) -> bool:
    """False for a derivation installable (`DRV^out`, or Nix 2.8's bare `DRV`)."""
    return not (root.endswith(".drv") or "^" in root)
