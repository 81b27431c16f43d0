"""The bucket side of the staged S3 transport: concurrent narinfo lookups and uploads with
boto3 (multipart for large NARs), each failure classified (errors.py).

Calls block (boto3 is synchronous); the transport runs them in a thread. One client is
shared by a pool of threads, as boto3 allows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .credentials import Location
from .errors import S3Failure, classify

log = logging.getLogger(__name__)

CONCURRENCY = 16  # requests in flight per batch: narinfo lookups, whole-file uploads
MULTIPART_THRESHOLD = 16 * 1024 * 1024  # a NAR above this goes up in parts...
PART_SIZE = 16 * 1024 * 1024  # ...of this size,
PART_CONCURRENCY = 4  # this many at a time
CONTENT_TYPES = {".narinfo": "text/x-nix-narinfo", "nix-cache-info": "text/x-nix-cache-info",
                 ".doi": "application/json"}


def content_type(key: str) -> str:
    for suffix, kind in CONTENT_TYPES.items():
        if key.endswith(suffix):
            return kind
    return "application/x-nix-nar"


@dataclass(frozen=True)
class Upload:
    key: str  # the object key, the file's path relative to the staging cache
    file: Path
    delete_after: bool = False  # staged NARs go as soon as they are in the bucket


@dataclass
class Traffic:
    """Requests and bytes sent, for the metrics and the benchmarks."""

    requests: int = 0
    bytes_up: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, requests: int, size: int = 0) -> None:
        with self.lock:
            self.requests += requests
            self.bytes_up += size


class Bucket:
    """One target's bucket. `s3` is a boto3 client; `looked_in` says where its credentials
    were looked for (for the message when there were none)."""

    def __init__(self, s3: Any, where: Location, looked_in: str,
                 key_id: Callable[[], str | None], traffic: Traffic | None = None) -> None:
        self._s3 = s3
        self.where = where
        self._looked_in = looked_in
        self._key_id = key_id
        self.traffic = traffic or Traffic()

    def _fail(self, exc: BaseException, what: str) -> S3Failure:
        return classify(exc, self.where, self._key_id(), what, self._looked_in)

    def get(self, key: str) -> bytes | None:
        """The object's content, or None when the bucket does not have it."""
        self.traffic.add(1)
        try:
            reply = self._s3.get_object(Bucket=self.where.bucket, Key=key)
            return bytes(reply["Body"].read())
        except Exception as exc:
            if _not_found(exc):
                return None
            raise self._fail(exc, f"GET {key}") from exc

    def has(self, key: str) -> bool:
        self.traffic.add(1)
        try:
            self._s3.head_object(Bucket=self.where.bucket, Key=key)
            return True
        except Exception as exc:
            if _not_found(exc):
                return False
            raise self._fail(exc, f"HEAD {key}") from exc

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The ones of `keys` the bucket has, asked concurrently."""
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            found = list(pool.map(self.get, keys))
        return {k: v for k, v in zip(keys, found, strict=True) if v is not None}

    def put(self, item: Upload) -> None:
        from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]

        try:
            size = item.file.stat().st_size
        except OSError as exc:  # the staging directory, not the network
            raise S3Failure("transient", f"PUT {item.key}: staged file {item.file}: "
                            f"{exc.strerror}") from exc
        config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                multipart_chunksize=PART_SIZE, max_concurrency=PART_CONCURRENCY)
        parts = 1 if size <= MULTIPART_THRESHOLD else 2 + -(-size // PART_SIZE)
        try:
            self._s3.upload_file(str(item.file), self.where.bucket, item.key,
                                 ExtraArgs={"ContentType": content_type(item.key)},
                                 Config=config)
        except Exception as exc:
            raise self._fail(exc, f"PUT {item.key}") from exc
        self.traffic.add(parts, size)
        if item.delete_after:
            item.file.unlink(missing_ok=True)

    def put_many(self, items: Iterable[Upload]) -> None:
        """Upload concurrently; the first failure is raised once the others have ended."""
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            futures = [pool.submit(self.put, item) for item in items]
        for future in futures:
            exc = future.exception()
            if exc is not None:
                raise exc


def _not_found(exc: BaseException) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str((response.get("Error", {}) or {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")
