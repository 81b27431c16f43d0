"""A target's store URL as `nix copy --to` takes it: the user's URL plus the parameters the
daemon adds (compression, signing key, ssh key).

This is the one place that turns a target's upload settings into store-URL parameters. The
`nix` transport passes the URL to `nix copy`; the staged S3 transport (daemon/s3/) puts the
same binary-cache parameters on its `file://` staging URL, so both write what this Nix writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from ..config.model import Target


@dataclass(frozen=True)
class TargetKeys:
    """Resolved key files of one target (the daemon looks in CREDENTIALS_DIRECTORY first)."""

    secret_key: str | None = None
    ssh_key: str | None = None
    credentials: str | None = None
    aws_env: str | None = None  # environment file of AWS_* variables (boto3 transport)

    @classmethod
    def from_target(cls, target: Target) -> TargetKeys:
        return cls(target.secret_key_file, target.ssh_key_file, target.credentials_file,
                   target.environment_file)

    def paths(self) -> tuple[str, ...]:
        return tuple(p for p in (self.secret_key, self.ssh_key, self.credentials,
                                 self.aws_env) if p)


def binary_cache_params(target: Target, keys: TargetKeys) -> list[tuple[str, str]]:
    """The parameters a binary cache upload adds: how NARs are compressed and signed.

    Nix 2.8, 2.26 and 2.34 all take `compression-level` and `parallel-compression` on every
    binary cache store (tests/integration/test_compression.py reads what each one wrote)."""
    if not target.is_binary_cache:
        return []
    params: list[tuple[str, str]] = []
    if target.compression:
        params.append(("compression", target.compression))
    if target.compression_level is not None:
        params.append(("compression-level", str(target.compression_level)))
    if target.parallel_compression:
        params.append(("parallel-compression", "true"))
    # The user's own `?compression=…` in the URL or `options` wins over the schema's default.
    given = {k for k, _ in parse_qsl(urlsplit(target.url).query)} | {k for k, _ in target.options}
    params = [(k, v) for k, v in params if k not in given]
    if keys.secret_key:
        params.append(("secret-key", keys.secret_key))
    return params


def with_params(url: str, extra: list[tuple[str, str]]) -> str:
    """`url` with `extra` appended to its query."""
    parts = urlsplit(url)
    params = list(parse_qsl(parts.query, keep_blank_values=True)) + extra
    query = "&".join(f"{quote(k, safe='-_.')}={quote(v, safe='/:@-._~,')}" for k, v in params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def store_url(target: Target, keys: TargetKeys) -> str:
    """The `--to` URL: the target's URL plus options, compression and key parameters.

    `priority` is a substituter setting, not an upload parameter, so it is never added.
    """
    params = list(target.options) + binary_cache_params(target, keys)
    if keys.ssh_key and target.scheme in ("ssh", "ssh-ng"):
        params.append(("ssh-key", keys.ssh_key))
    return with_params(target.url, params)
