"""The uploader: the real `nix copy --to URL PATH...`, with signing, filters and a deadline.

Binary caches (file, http(s), s3) sign narinfos at upload with the store URL's
`secret-key=` parameter; ssh and ssh-ng stores get `nix store sign` on the local paths first.
`nix copy` is recursive, which keeps the cache closed. Filters (exclude globs,
`skip_signed_by`) apply to the queued paths; see `_plan` for why not to their closures.

Secrets: key files are only ever named (by path) in argv; their content is never read here.
Every message leaving this module goes through `redact`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from ..config.model import Config, Filters, Target
from ..errors import NpqError
from ..nix import dialect, pathinfo, runner
from . import filters

log = logging.getLogger(__name__)

UploadKind = Literal["ok", "transient", "permanent"]

MESSAGE_LINES = 6
MESSAGE_CHARS = 800


@dataclass(frozen=True)
class UploadResult:
    kind: UploadKind
    message: str  # secrets redacted; first lines of nix's stderr
    gone: tuple[str, ...] = ()  # paths no longer valid in the local store
    skipped: tuple[str, ...] = ()  # filtered (excluded or upstream-signed); not uploaded
    sizes: Mapping[str, int] = field(default_factory=dict)  # NAR bytes of uploaded paths


class Uploader(Protocol):
    async def upload(self, target: Target, paths: Sequence[str]) -> UploadResult: ...


@dataclass(frozen=True)
class TargetKeys:
    """Resolved key files of one target (the daemon looks in CREDENTIALS_DIRECTORY first)."""

    secret_key: str | None = None
    ssh_key: str | None = None
    credentials: str | None = None

    @classmethod
    def from_target(cls, target: Target) -> TargetKeys:
        return cls(target.secret_key_file, target.ssh_key_file, target.credentials_file)

    def paths(self) -> tuple[str, ...]:
        return tuple(p for p in (self.secret_key, self.ssh_key, self.credentials) if p)


class UploadFailed(NpqError):
    """A Nix command of an upload failed; carries the classification (used internally)."""

    def __init__(self, kind: UploadKind, message: str) -> None:
        self.kind = kind
        super().__init__(message)


def store_url(target: Target, keys: TargetKeys) -> str:
    """The `--to` URL: the target's URL plus options, compression and key parameters.

    `priority` is a substituter setting, not an upload parameter, so it is never added.
    """
    parts = urlsplit(target.url)
    params = list(parse_qsl(parts.query, keep_blank_values=True))
    params += list(target.options)
    if target.compression and target.is_binary_cache:
        params.append(("compression", target.compression))
    if keys.secret_key and target.is_binary_cache:
        params.append(("secret-key", keys.secret_key))
    if keys.ssh_key and target.scheme in ("ssh", "ssh-ng"):
        params.append(("ssh-key", keys.ssh_key))
    query = "&".join(f"{quote(k, safe='-_.')}={quote(v, safe='/:@-._~,')}" for k, v in params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


_NIX_PREFIXES = ("error:", "warning:", "copying ", "these ", "this path")
_COPIED = re.compile(r"^copying (\d+) paths", re.MULTILINE)
_SECRET_PARAM = re.compile(r"((?:secret-key|ssh-key)=)[^&\s'\"]*")


def redact(text: str) -> str:
    """Strip key parameter values from any URL Nix echoes back."""
    return _SECRET_PARAM.sub(r"\1<redacted>", text)


def summarize(stderr: str) -> str:
    """The lines of Nix's stderr that say what went wrong, redacted and bounded.

    Nix prints progress ("copying path ...") and retry warnings before the final `error:`;
    the error and the lines after it (curl's response body, ssh's reason) are what matter.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    if errors:
        start = errors[-1]
        # Child programs (ssh) print their reason just before Nix's error line.
        while (start > 0 and errors[-1] - start < MESSAGE_LINES // 2
               and not lines[start - 1].startswith(_NIX_PREFIXES)):
            start -= 1
        lines = lines[start:]
    lines = [line for line in lines if not line.startswith(("copying ", "<", "response body"))]
    return redact(" | ".join(lines[:MESSAGE_LINES]))[:MESSAGE_CHARS]


_PERMANENT = (
    "don't know how to open nix store",  # e.g. s3:// on a Nix built without S3
    "unsupported uri scheme",
    "secret key is corrupt",
    "secret key is not valid",
    "unknown compression method",
    "lacks a valid signature",  # the remote does not trust the target's key (Nix 2.8)
    "lacks a signature by a trusted key",  # the same from Nix 2.26 and 2.34
    "is not in the nix store",
    "is not a store path",
    "host key verification failed",
    "permission denied (publickey",
)
_HTTP_STATUS = re.compile(r"http error (\d{3})")
_RETRYABLE_4XX = frozenset({408, 409, 423, 425, 429})


def classify(result: runner.CmdResult, key_paths: Sequence[str] = ()) -> UploadKind:
    """ok / transient / permanent from exit status and stderr. When unsure: transient."""
    if result.ok:
        return "ok"
    if result.timed_out or result.returncode < 0:
        return "transient"
    text = result.stderr.lower()
    if any(marker in text for marker in _PERMANENT):
        return "permanent"
    # A key file that cannot be opened is a configuration error; a cache directory that
    # cannot be written may be fixed by its admin, so that one stays transient.
    for path in key_paths:
        # Nix 2.8 and 2.26 quote the path with ', Nix 2.34 with ".
        if any(f"opening file {q}{path.lower()}{q}" in text for q in "'\""):
            return "permanent"
    status = _HTTP_STATUS.findall(text)
    if status:
        code = int(status[-1])
        if 400 <= code < 500 and code not in _RETRYABLE_4XX:
            return "permanent"
    return "transient"


class NixCopyUploader:
    """The Uploader of the daemon: one `nix copy` per batch."""

    def __init__(self, *, filters: Filters, timeout: float, env: Mapping[str, str],
                 keys: Mapping[str, TargetKeys] | None = None,
                 nix_bin_dir: str | None = None) -> None:
        self._filters = filters
        self._timeout = timeout
        self._env = dict(env)
        self._keys = dict(keys or {})
        self._bin = nix_bin_dir
        self._dialect: dialect.Dialect | None = None

    @classmethod
    def from_config(cls, config: Config, env: Mapping[str, str],
                    keys: Mapping[str, TargetKeys] | None = None) -> NixCopyUploader:
        return cls(filters=config.filters, timeout=config.queue.upload_timeout, env=env,
                   keys=keys, nix_bin_dir=config.nix.nix_bin_dir)

    def keys_for(self, target: Target) -> TargetKeys:
        return self._keys.get(target.name) or TargetKeys.from_target(target)

    async def upload(self, target: Target, paths: Sequence[str]) -> UploadResult:
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
                copied = await self._copy(target, keys, roots, deadline)
            else:
                copied = 0
        except UploadFailed as exc:
            return UploadResult(exc.kind, str(exc), tuple(gone), tuple(skipped))
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
                    deadline: float) -> int:
        flags = []
        if self._filters.skip_signed_by and not target.is_binary_cache:
            # Let the remote store fetch upstream paths from its own substituters.
            flags = ["--substitute-on-destination"]
        argv = (await self._detect()).nix("copy", *flags, "--to", store_url(target, keys), *roots)
        result = await self._run(argv, deadline, keys, "nix copy")
        # "copying N paths..." counts what the target was missing, closure included.
        match = _COPIED.search(result.stderr)
        return int(match.group(1)) if match else len(roots)
