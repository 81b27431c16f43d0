"""The uploader: the real `nix copy --to URL PATH...`, with signing, filters and a deadline.

Binary caches (file, http(s), s3) sign narinfos at upload with the store URL's
`secret-key=` parameter; ssh and ssh-ng stores get `nix store sign` on the local paths first.
`nix copy` is recursive, which keeps the cache closed. Filters (exclude globs,
`skip_signed_by`) apply to the queued paths; see `_plan` for why not to their closures.

Secrets: key files are only ever named (by path) in argv; their content is never read here.
Every message leaving this module goes through `redact` (nixerrors.py, with how Nix's stderr
is summarized and classified).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..config.model import Config, Filters, Target
from ..errors import NpqError
from ..nix import dialect, pathinfo, runner
from . import derived, filters, transport
from .derived import Derivations
from .nixerrors import UploadKind, classify, redact, summarize
from .s3.staging import StagingArea
from .storeurl import TargetKeys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadResult:
    kind: UploadKind
    message: str  # secrets redacted; first lines of nix's stderr
    gone: tuple[str, ...] = ()  # paths no longer valid in the local store
    skipped: tuple[str, ...] = ()  # filtered (excluded or upstream-signed); not uploaded
    sizes: Mapping[str, int] = field(default_factory=dict)  # NAR bytes of uploaded paths
    # Every path of this target would fail the same way (its credentials were refused):
    # settle the whole batch, do not bisect it.
    target_wide: bool = False


class Uploader(Protocol):
    async def upload(self, target: Target, paths: Sequence[str],
                     derivations: Derivations | None = None) -> UploadResult: ...


class UploadFailed(NpqError):
    """A Nix command of an upload failed; carries the classification (used internally)."""

    def __init__(self, kind: UploadKind, message: str, *, target_wide: bool = False) -> None:
        self.kind = kind
        self.target_wide = target_wide
        super().__init__(message)


class NixCopyUploader:
    """The Uploader of the daemon: one `nix copy` per batch."""

    def __init__(self, *, filters: Filters, timeout: float, env: Mapping[str, str],
                 keys: Mapping[str, TargetKeys] | None = None,
                 nix_bin_dir: str | None = None,
                 choices: Mapping[str, transport.Choice] | None = None,
                 staging: StagingArea | None = None, workers: int = 1) -> None:
        self._filters = filters
        self._choices = dict(choices or {})
        self.staging = staging
        self._workers = workers
        self._s3: transport.Transport | None = None
        self._timeout = timeout
        self._env = dict(env)
        self._keys = dict(keys or {})
        self._bin = nix_bin_dir
        self._dialect: dialect.Dialect | None = None

    @classmethod
    def from_config(cls, config: Config, env: Mapping[str, str],
                    keys: Mapping[str, TargetKeys] | None = None,
                    choices: Mapping[str, transport.Choice] | None = None) -> NixCopyUploader:
        staging = StagingArea(Path(config.queue.state_dir) / "staging",
                              config.queue.staging_max_bytes)
        return cls(filters=config.filters, timeout=config.queue.upload_timeout, env=env,
                   keys=keys, nix_bin_dir=config.nix.nix_bin_dir, choices=choices,
                   staging=staging, workers=config.queue.workers)

    def s3_has(self, target: Target, path: str) -> bool:
        """Whether a boto3-transport target's bucket has `path` (s3/transport.py)."""
        from .s3.transport import bucket_has

        return bucket_has(self._s3, self._env, target, self.keys_for(target), path)

    def s3_traffic(self) -> dict[str, tuple[int, int]]:
        """Target name -> (requests, bytes) the boto3 transport sent to its bucket."""
        from .s3.transport import S3Transport

        if not isinstance(self._s3, S3Transport):
            return {}
        return self._s3.traffic()

    def keys_for(self, target: Target) -> TargetKeys:
        return self._keys.get(target.name) or TargetKeys.from_target(target)

    async def upload(self, target: Target, paths: Sequence[str],
                     derivations: Derivations | None = None) -> UploadResult:
        deadline = time.monotonic() + self._timeout
        keys = self.keys_for(target)
        roots = list(dict.fromkeys(paths))
        skipped = [p for p in roots if filters.excluded(p, self._filters.exclude)]
        roots = [p for p in roots if p not in skipped]
        gone: list[str] = []
        try:
            await self._detect(deadline)
            # One `nix path-info` answers validity, signatures (the filter) and NAR sizes.
            infos = {i.path: i for i in await self._path_infos(roots, deadline, keys)}
            gone = [p for p in roots if p not in infos]
            roots = [p for p in roots if p in infos]
            if gone:
                log.info("%s: %d path(s) no longer in the local store: %s",
                         target.name, len(gone), " ".join(gone))
            if not roots:
                return UploadResult("ok", "nothing to upload", tuple(gone), tuple(skipped))
            roots, upstream_roots = self._plan(roots, infos)
            skipped += upstream_roots
            if roots:
                await self._sign(target, keys, roots, deadline)
                copied = await self._copy(target, keys, roots, deadline,
                                          derived.present(derivations or {}))
            else:
                copied = 0
        except UploadFailed as exc:
            return UploadResult(exc.kind, str(exc), tuple(gone), tuple(skipped),
                                target_wide=exc.target_wide)
        sizes = {p: size for p in roots if (size := infos[p].nar_size) is not None}
        return UploadResult("ok", f"copied {copied} path(s) to {redact(target.url)}",
                            tuple(gone), tuple(skipped), sizes)

    async def _detect(self, deadline: float | None = None) -> dialect.Dialect:
        """The installed Nix's dialect, asked once; a version line we cannot read is a
        permanent failure (no retry makes it readable)."""
        if self._dialect is None:
            timeout = dialect.VERSION_TIMEOUT if deadline is None else deadline - time.monotonic()
            try:
                self._dialect = await dialect.detect_async(self._bin, self._env, timeout)
            except dialect.DialectError as exc:
                if exc.transient:
                    raise UploadFailed("transient", str(exc)) from exc
                log.error("%s", exc)
                raise UploadFailed("permanent", str(exc)) from exc
            log.info("uploading with %s", self._dialect.describe())
        return self._dialect

    async def _run(self, argv: list[str], deadline: float, keys: TargetKeys,
                   what: str) -> runner.CmdResult:
        env = dict(self._env)
        if keys.credentials:
            env["AWS_SHARED_CREDENTIALS_FILE"] = keys.credentials
        log.debug("running %s", redact(" ".join(argv[:6])))
        result = await runner.run(argv, env=env, timeout=deadline - time.monotonic())
        kind = classify(result, keys.paths())
        if kind != "ok":
            reason = "timed out" if result.timed_out else f"exited {result.returncode}"
            raise UploadFailed(kind, f"{what} {reason}: {summarize(result.stderr)}")
        return result

    async def _path_infos(self, roots: list[str], deadline: float,
                          keys: TargetKeys) -> list[pathinfo.PathInfo]:
        """The valid ones of `roots` with their signatures and sizes (Nix lists an invalid
        path as `"valid": false` or `null` and still exits 0)."""
        if not roots:
            return []
        argv = (await self._detect()).path_info_json(roots)
        result = await self._run(argv, deadline, keys, "nix path-info")
        try:
            return pathinfo.parse_path_infos(result.stdout)
        except pathinfo.PathInfoError as exc:
            # Our parser, not the network: retrying cannot help, and it must be seen.
            log.error("%s", exc)
            raise UploadFailed("permanent", str(exc)) from exc

    def _plan(self, roots: list[str], infos: Mapping[str, pathinfo.PathInfo]
              ) -> tuple[list[str], list[str]]:
        """(roots to copy, roots skipped because an upstream cache serves them).

        Only roots are filtered: measured on Nix 2.8, a binary cache refuses a path whose
        references it does not hold ("cannot add ... because the reference ... is not
        valid"), even with `nix copy --no-recursive`; and a store (ssh) must hold whole
        closures. So an upstream-signed dependency of a kept path is still copied (once).
        """
        upstream = filters.upstream_signed((infos[p] for p in roots),
                                           self._filters.skip_signed_by)
        return [p for p in roots if p not in upstream], [p for p in roots if p in upstream]

    async def _sign(self, target: Target, keys: TargetKeys, roots: list[str],
                    deadline: float) -> None:
        """Stores (ssh) take signatures from the local paths: sign the closure first."""
        if target.is_binary_cache or not keys.secret_key:
            return
        argv = (await self._detect()).nix("store", "sign", "--recursive",
                                          "--key-file", keys.secret_key, *roots)
        await self._run(argv, deadline, keys, "nix store sign")

    async def _copy(self, target: Target, keys: TargetKeys, roots: list[str],
                    deadline: float, derivations: Derivations) -> int:
        nix = await self._detect()
        send = self._transport(target, nix).send
        installables = derived.derived_roots(nix, roots, derivations)
        if installables == roots:
            return await send(target, keys, roots, deadline)
        try:
            return await send(target, keys, installables, deadline)
        except UploadFailed as exc:
            if not any(m in str(exc).lower() for m in derived.NOT_BUILT):
                raise
            # An output of a derivation is not in the store (Nix 2.8 copies them all): the
            # paths themselves still go, without realisations.
            log.warning("%s: copying %s failed (%s); copying the paths without their "
                        "realisations", target.name, " ".join(installables[:3]), exc)
            return await send(target, keys, roots, deadline)

    def _transport(self, target: Target, nix: dialect.Dialect) -> transport.Transport:
        """How this target's batch travels (transport.py): the staged S3 transport for the
        targets whose choice is boto3 (transport.choose), `nix copy --to URL` otherwise."""
        choice = self._choices.get(target.name)
        if choice is None or choice.name != "boto3":
            return transport.NixCopyTransport(nix, self._run, self._filters)
        if self._s3 is None:
            from .s3.transport import S3Transport, boto3_bucket

            if self.staging is None:
                raise UploadFailed("permanent", "the boto3 transport has no staging area")
            self._s3 = S3Transport(nix, self._run, self.staging, boto3_bucket(self._env),
                                   max(self.staging.max_bytes // self._workers, 1))
        return self._s3

