"""Where an s3:// target is, whose credentials sign its requests, and what a refusal means.

The URL's parameters mean what they mean to Nix's S3 store: `region=` (default us-east-1),
`endpoint=` (a host, `host:port` or a URL; absent: AWS), `scheme=` (http or https, for an
endpoint given without one) and `profile=` (a profile of the shared config files).

Credentials come from boto3's own chain: the environment, the shared credentials and config
files (profiles, SSO, assume-role), web identity (CI OIDC), container and instance metadata.
A target's `credentials_file` (or the credential systemd's LoadCredential put in place) is
that chain's shared credentials file; an environment file (`KEY=value` lines of `AWS_*`
variables, e.g. a LoadCredential of the daemon's unit) adds variables for this target only.

Errors: every botocore failure becomes (kind, message) here, with what the user can act on:
the key id that was refused, where credentials were looked for, the bucket that does not
exist, the region or the endpoint. Refusals of the key are permanent for the whole target.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from ...config.model import Config

Kind = Literal["transient", "permanent"]
DEFAULT_REGION = "us-east-1"  # Nix's default for s3:// stores
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0

# Environment-file variables, as botocore's session config variables (their logical names).
_ENV_CONFIG = {
    "AWS_PROFILE": "profile",
    "AWS_CONFIG_FILE": "config_file",
    "AWS_SHARED_CREDENTIALS_FILE": "credentials_file",
    "AWS_ROLE_ARN": "role_arn",
    "AWS_ROLE_SESSION_NAME": "role_session_name",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "web_identity_token_file",
    "AWS_STS_REGIONAL_ENDPOINTS": "sts_regional_endpoints",
}
_ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class BotoMissing(Exception):
    """boto3 is not installed (the `s3` extra)."""


@dataclass(frozen=True)
class Location:
    bucket: str
    region: str
    endpoint: str | None  # a full URL, or None for AWS itself
    profile: str | None

    def describe(self) -> str:
        where = self.endpoint or f"AWS ({self.region})"
        return f"s3://{self.bucket} at {where}"


def location(url: str) -> Location:
    """The bucket, region, endpoint and profile of an `s3://BUCKET?...` store URL."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    endpoint = params.get("endpoint") or None
    if endpoint is not None and "://" not in endpoint:
        endpoint = f"{params.get('scheme') or 'https'}://{endpoint}"
    return Location(bucket=parts.netloc, region=params.get("region") or DEFAULT_REGION,
                    endpoint=endpoint, profile=params.get("profile") or None)


def read_env_file(path: str) -> dict[str, str]:
    """`KEY=value` lines (systemd EnvironmentFile style: `#` comments, optional quotes)."""
    found: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[key.strip()] = value
    return found


@dataclass(frozen=True)
class Credentials:
    """The sources of one target's credentials (never the secrets themselves)."""

    credentials_file: str | None = None  # credentials_file / LoadCredential
    env_file: str | None = None  # AWS_* variables for this target


def _botocore_session(where: Location, creds: Credentials) -> Any:
    try:
        import botocore.session  # type: ignore[import-untyped]
    except ImportError as exc:
        raise BotoMissing("boto3 is not installed: install nix-push-queue with its `s3` "
                          "extra (pip install 'nix-push-queue[s3]')") from exc
    session = botocore.session.Session()
    env = read_env_file(creds.env_file) if creds.env_file else {}
    if creds.credentials_file:
        session.set_config_variable("credentials_file", creds.credentials_file)
    for var, name in _ENV_CONFIG.items():
        if env.get(var):
            session.set_config_variable(name, env[var])
    if where.profile:
        session.set_config_variable("profile", where.profile)
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        session.set_credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                                env.get("AWS_SESSION_TOKEN") or None)
    return session


def client(where: Location, creds: Credentials, max_pool: int) -> Any:
    """A boto3 S3 client for `where`, signing with SigV4 (thread-safe; shared by threads)."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    # botocore's debug lines carry request signatures and bodies: never in the daemon's log,
    # whatever its level.
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    session = boto3.Session(botocore_session=_botocore_session(where, creds))
    config = Config(signature_version="s3v4", max_pool_connections=max_pool,
                    connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                    retries={"max_attempts": 3, "mode": "standard"},
                    s3={"addressing_style": "path" if where.endpoint else "auto"})
    return session.client("s3", region_name=where.region, endpoint_url=where.endpoint,
                          config=config)


def key_id(s3: Any) -> str | None:
    """The access key id the client signs with (not a secret), or None without one."""
    try:
        found = s3._request_signer._credentials  # resolved lazily by botocore
        if found is None:
            return None
        return str(found.get_frozen_credentials().access_key)
    except Exception:
        return None


def looked_in(where: Location, creds: Credentials, env: Mapping[str, str]) -> str:
    """Where the chain looked for credentials, for the "no credentials" message."""
    home = env.get("HOME", "~")
    places = []
    if creds.env_file:
        places.append(f"the environment file {creds.env_file}")
    places.append("the daemon's environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
    shared = (creds.credentials_file or env.get("AWS_SHARED_CREDENTIALS_FILE")
              or f"{home}/.aws/credentials")
    config = env.get("AWS_CONFIG_FILE") or f"{home}/.aws/config"
    profile = where.profile or env.get("AWS_PROFILE") or "default"
    places.append(f"profile {profile!r} of {shared} and {config}")
    places.append("web identity (AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE)")
    if env.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true":
        places.append("container and instance metadata")
    return ", ".join(places)


def aws_files(config: Config, credentials_dir: str | None) -> dict[str, str]:
    """AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE of the daemon (service.aws_*): the
    copies systemd's LoadCredential made (`aws-config`, `aws-credentials`), else the
    configured paths. Set in the daemon's environment, for boto3 and for `nix copy`."""
    found = {}
    for var, name, configured in (
            ("AWS_CONFIG_FILE", "aws-config", config.service.aws_config_file),
            ("AWS_SHARED_CREDENTIALS_FILE", "aws-credentials",
             config.service.aws_shared_credentials_file)):
        loaded = Path(credentials_dir) / name if credentials_dir else None
        if loaded is not None and loaded.is_file():
            found[var] = str(loaded)
        elif configured:
            found[var] = configured
    return found
