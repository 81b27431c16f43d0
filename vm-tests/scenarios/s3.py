"""A builder pushing to an S3 bucket (MinIO on another machine) with credentials loaded by
systemd's LoadCredential; the path comes back over the bucket's public HTTP endpoint with
signatures required.

The builder generates its access key at boot (`credentials_file`, AWS shared-credentials
format); this scenario makes MinIO know it, using MinIO's root credentials, which the cache
machine generated at boot too. No credential is ever in the Nix store.
"""

from __future__ import annotations

import configparser
import shlex
from dataclasses import dataclass

from . import steps
from .machine import Machine, Subtest, plain_subtest


@dataclass(frozen=True)
class Params:
    bucket: str
    push_url: str  # s3://BUCKET?endpoint=...&region=... (needs credentials)
    http_url: str  # http://cache:9000/BUCKET (anonymous download)
    public_key_file: str  # on the builder
    credentials_file: str  # on the builder
    root_env_file: str  # MINIO_ROOT_USER=/MINIO_ROOT_PASSWORD= lines, on the cache machine
    endpoint: str = "http://localhost:9000"  # MinIO as the cache machine sees itself
    build: str = "nix-build --no-out-link"
    timeout: int = 600


def _access_key(builder: Machine, credentials_file: str) -> tuple[str, str]:
    parser = configparser.ConfigParser()
    parser.read_string(builder.succeed(f"cat {shlex.quote(credentials_file)}"))
    section = parser["default"]
    return section["aws_access_key_id"], section["aws_secret_access_key"]


def run(builder: Machine, cache: Machine, p: Params,
        subtest: Subtest = plain_subtest) -> list[steps.Built]:
    with subtest("MinIO: a bucket, public downloads, and the builder's uploader key"):
        cache.wait_for_unit("minio.service")
        cache.wait_until_succeeds(f"curl -fsS {p.endpoint}/minio/health/ready")
        access, secret = _access_key(builder, p.credentials_file)
        bucket = f"local/{p.bucket}"
        cache.succeed(
            f". {shlex.quote(p.root_env_file)} && mc alias set local {p.endpoint}"
            ' "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"',
            f"mc mb --ignore-existing {bucket}",
            f"mc anonymous set download {bucket}",
            f"mc admin user add local {shlex.quote(access)} {shlex.quote(secret)}",
            f"mc admin policy attach local readwrite --user {shlex.quote(access)}",
        )
        builder.wait_for_unit(steps.SOCKET_UNIT)
    with subtest("build; the queue uploads it to the bucket"):
        built = [steps.build(builder, p.build, "npq-s3")]
        steps.wait_pushed(builder, p.http_url, built, p.timeout)
    with subtest("delete it and substitute it back over HTTP, signatures required"):
        steps.delete(builder, built)
        key = steps.public_key(builder, p.public_key_file)
        steps.substitute_back(builder, built, key, p.http_url)
    return built
