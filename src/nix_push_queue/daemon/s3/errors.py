"""What a failed S3 request means, in words a user can act on, and whether to retry.

Refusals of the credentials (unknown key id, wrong secret, access denied, no credentials at
all) and a bucket that is not there or lives in another region are permanent: retrying
cannot fix them, so the paths become dead letters at once, with this message, and the
whole batch is settled without being split (`target_wide`). A network failure, a timeout,
throttling and a server error (5xx) are transient.
"""

from __future__ import annotations

from typing import Any

from .credentials import Kind, Location

_NETWORK = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
            "ConnectionClosedError", "ConnectionError", "ProxyConnectionError")
_TRANSIENT_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                              "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable",
                              "OperationAborted", "503", "500", "502", "504"})


class S3Failure(Exception):
    """A classified S3 failure: `target_wide` when every path of the target would fail.
    (A plain exception: `raise ... from` must be able to set its cause.)"""

    def __init__(self, kind: Kind, message: str, target_wide: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.target_wide = target_wide


def _code(exc: Any) -> tuple[str, int | None, str]:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {}) or {}
    status = (response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
    return str(error.get("Code", "")), status, str(error.get("Message", "") or "")


def _local(exc: BaseException, where: Location, what: str, looked_in: str
           ) -> S3Failure | None:
    """Failures before any answer from the server: credentials, config, network."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return S3Failure("permanent", f"no AWS credentials for {where.describe()}: looked in "
                         f"{looked_in}; set credentials_file, a profile= or AWS_* variables",
                         True)
    if name == "ProfileNotFound":
        return S3Failure("permanent", f"{exc}: the profile= of {where.describe()} is in none "
                         f"of the files looked in ({looked_in})", True)
    if name in ("NoRegionError", "InvalidRegionError"):
        return S3Failure("permanent", f"{where.describe()}: {exc}; set region=", True)
    if any(n in name for n in _NETWORK) or isinstance(exc, OSError):
        return S3Failure("transient", f"cannot reach the S3 endpoint of {where.describe()} "
                         f"({what}): {exc}")
    return None


_REFUSED = {
    "InvalidAccessKeyId": "the key id is unknown there",
    "SignatureDoesNotMatch": "the secret does not match that key id",
}
_DENIED = frozenset({"AccessDenied", "403", "Forbidden", "InvalidToken", "ExpiredToken",
                     "AllAccessDisabled", "AccountProblem"})
_REGION = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed",
                     "IllegalLocationConstraint", "301"})


def _answered(code: str, status: int | None, detail: str, where: Location, *, key_text: str,
              what: str) -> S3Failure:
    """Failures the server answered with a code (`code`, `status`)."""
    described = where.describe()
    if code in _REFUSED:
        return S3Failure("permanent", f"{described} refused {key_text}: {_REFUSED[code]} "
                         f"({code} during {what}){detail}", True)
    if code in _DENIED:
        return S3Failure("permanent", f"{described} refused {key_text}: {code} during "
                         f"{what}{detail}; the key needs s3:GetObject and s3:PutObject on the "
                         "bucket", True)
    if code == "NoSuchBucket":
        return S3Failure("permanent", f"the bucket {where.bucket} does not exist at "
                         f"{where.endpoint or 'AWS'} (NoSuchBucket during {what})", True)
    if code in _REGION or status == 301:
        return S3Failure("permanent", f"the bucket {where.bucket} is not in region "
                         f"{where.region} ({code or status} during {what}){detail}; set the "
                         "bucket's region with region=", True)
    retryable = status is None or status >= 500 or status in (408, 409, 429)
    if code in _TRANSIENT_CODES or retryable:
        return S3Failure("transient", f"{described}: {code or status} during {what}{detail}")
    return S3Failure("permanent", f"{described}: {code or status} during {what}{detail}")


def classify(exc: BaseException, where: Location, key: str | None, what: str,
             looked_in: str) -> S3Failure:
    """`exc` from botocore/boto3 during `what` (e.g. "PUT nar/x.nar.xz") as an S3Failure."""
    local = _local(exc, where, what, looked_in)
    if local is not None:
        return local
    code, status, message = _code(exc)
    if not code and status is None:
        return S3Failure("transient", f"{where.describe()}: {type(exc).__name__} during "
                         f"{what}: {exc}")
    detail = f" ({message})" if message and message not in code else ""
    key_text = f"access key id {key}" if key else "the credentials"
    return _answered(code, status, detail, where, key_text=key_text, what=what)
