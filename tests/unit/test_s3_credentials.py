"""daemon/s3/credentials.py and errors.py: the URL's parameters as Nix reads them, the
environment file, where credentials were looked for, and every refusal's message."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from nix_push_queue.daemon.s3 import credentials
from nix_push_queue.daemon.s3.errors import classify


def test_location_reads_the_url_as_nix_does() -> None:
    where = credentials.location("s3://b?region=eu-west-1&endpoint=minio:9000&scheme=http"
                                 "&profile=ci")
    assert where == credentials.Location("b", "eu-west-1", "http://minio:9000", "ci")
    assert credentials.location("s3://b").region == "us-east-1"
    assert credentials.location("s3://b").endpoint is None
    assert credentials.location("s3://b?endpoint=r2.example").endpoint == "https://r2.example"
    assert credentials.location("s3://b?endpoint=http://h:1").endpoint == "http://h:1"


def test_env_file_and_session_credentials(tmp_path: Path) -> None:
    env = tmp_path / "aws.env"
    env.write_text("# uploader\nAWS_ACCESS_KEY_ID=AKIAEXAMPLE\n"
                   "export AWS_SECRET_ACCESS_KEY='s3cr3t'\n\nAWS_REGION=x\n", encoding="utf-8")
    assert credentials.read_env_file(str(env)) == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "AWS_REGION": "x"}
    where = credentials.location("s3://b?endpoint=http://127.0.0.1:9")
    s3 = credentials.client(where, credentials.Credentials(env_file=str(env)), 4)
    assert credentials.key_id(s3) == "AKIAEXAMPLE"
    shared = tmp_path / "credentials"
    shared.write_text("[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = x\n"
                      "[ci]\naws_access_key_id = AKIACI\naws_secret_access_key = y\n",
                      encoding="utf-8")
    s3 = credentials.client(where, credentials.Credentials(str(shared)), 4)
    assert credentials.key_id(s3) == "AKIAFILE"
    ci = credentials.location("s3://b?endpoint=http://127.0.0.1:9&profile=ci")
    assert credentials.key_id(credentials.client(ci, credentials.Credentials(str(shared)),
                                                 4)) == "AKIACI"


def test_looked_in_names_every_place() -> None:
    where = credentials.location("s3://b?profile=ci")
    text = credentials.looked_in(where, credentials.Credentials("/run/c/creds", "/run/c/env"),
                                 {"HOME": "/root", "AWS_EC2_METADATA_DISABLED": "true"})
    assert "the environment file /run/c/env" in text
    assert "profile 'ci' of /run/c/creds and /root/.aws/config" in text
    assert "web identity" in text and "instance metadata" not in text


def error(code: str, status: int, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


WHERE = credentials.location("s3://b?endpoint=http://h:1&region=eu-west-1")


@pytest.mark.parametrize(("exc", "kind", "wide", "text"), [
    (error("InvalidAccessKeyId", 403), "permanent", True,
     "refused access key id AKIA1: the key id is unknown there"),
    (error("SignatureDoesNotMatch", 403), "permanent", True,
     "refused access key id AKIA1: the secret does not match"),
    (error("403", 403), "permanent", True, "refused access key id AKIA1: 403"),
    (error("NoSuchBucket", 404), "permanent", True, "the bucket b does not exist at http://h:1"),
    (error("PermanentRedirect", 301), "permanent", True, "is not in region eu-west-1"),
    (error("SlowDown", 503), "transient", False, "SlowDown during PUT k"),
    (error("InternalError", 500), "transient", False, "InternalError"),
    (error("EntityTooLarge", 400), "permanent", False, "EntityTooLarge"),
    (EndpointConnectionError(endpoint_url="http://h:1"), "transient", False,
     "cannot reach the S3 endpoint of s3://b at http://h:1"),
    (NoCredentialsError(), "permanent", True,
     "no AWS credentials for s3://b at http://h:1: looked in HERE"),
])
def test_classify(exc: Exception, kind: str, wide: bool, text: str) -> None:
    failure = classify(exc, WHERE, "AKIA1", "PUT k", "HERE")
    assert (failure.kind, failure.target_wide) == (kind, wide)
    assert text in failure.message
