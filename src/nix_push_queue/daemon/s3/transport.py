"""The staged S3 transport: Nix writes the binary cache, boto3 carries it, on any Nix.

For one batch of roots:
1. `nix path-info -r --json`: the closure, its references and NAR sizes;
2. the bucket is asked for each closure path's narinfo, concurrently; what it has is
   seeded into a fresh staging directory (Nix refuses a path whose references are not
   valid in the destination, and compresses nothing the bucket already has);
3. the missing paths, references first, in chunks that fit the staging cap: `nix copy --to
   'file://<staging>?<binary_cache_params>'` writes their NARs and signed narinfos exactly
   as this Nix writes them (compression and signing: storeurl.binary_cache_params);
4. boto3 uploads each chunk: every NAR first (concurrently, multipart when large, each
   deleted from staging once up), then the narinfos, references' before referrers', then
   realisations. `nix-cache-info` goes up once, before the first narinfo, if the bucket
   lacks it. So no reader ever sees a narinfo whose NAR or references are missing, and a
   batch interrupted anywhere is finished by the next attempt, which finds what landed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ...config.model import Target
from ...nix import dialect, pathinfo
from ...nix.storepath import narinfo_name
from ..storeurl import TargetKeys, binary_cache_params, with_params
from ..transport import NixRun, storepath_like
from . import credentials
from .bucket import Bucket, Upload
from .errors import S3Failure
from .staging import (
    CACHE_INFO,
    NarInfo,
    StagingArea,
    chunks,
    closure_order,
    layers,
    parse_narinfo,
)

log = logging.getLogger(__name__)

# Nix remembers narinfo lookups of a cache for an hour; a fresh staging directory must be
# read as it is.
_NO_NARINFO_CACHE = ("--option", "narinfo-cache-negative-ttl", "0",
                     "--option", "narinfo-cache-positive-ttl", "0")

BucketFactory = Callable[[Target, TargetKeys], Bucket]


def boto3_bucket(env: Mapping[str, str]) -> BucketFactory:
    """Buckets with boto3 clients whose credentials come from boto3's chain (credentials.py);
    `env`: the daemon's environment, for the message saying where credentials were looked."""

    def make(target: Target, keys: TargetKeys) -> Bucket:
        where = credentials.location(target.url)
        creds = credentials.Credentials(keys.credentials, keys.aws_env)
        try:
            s3 = credentials.client(where, creds, max_pool=32)
        except credentials.BotoMissing as exc:
            raise S3Failure("permanent", str(exc), True) from exc
        except Exception as exc:  # a profile= that is nowhere, a broken config file
            from .errors import classify
            raise classify(exc, where, None, "opening the bucket",
                           credentials.looked_in(where, creds, env)) from exc
        return Bucket(s3, where, credentials.looked_in(where, creds, env),
                      lambda: credentials.key_id(s3))

    return make


class S3Transport:
    """Transport (daemon/transport.py) of s3:// targets through a staging `file://` cache."""

    def __init__(self, nix: dialect.Dialect, run: NixRun, area: StagingArea,
                 buckets: BucketFactory, chunk_budget: int) -> None:
        self._nix = nix
        self._run = run
        self._area = area
        self._make_bucket = buckets
        self._budget = chunk_budget
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()
        self._cache_info: set[str] = set()  # targets whose bucket has nix-cache-info
        # Target -> store path -> set when the batch uploading it ends (see _missing).
        self._claims: dict[str, dict[str, asyncio.Event]] = {}

    def traffic(self) -> dict[str, tuple[int, int]]:
        """Target name -> (requests, bytes) sent to its bucket so far."""
        return {name: (b.traffic.requests, b.traffic.bytes_up)
                for name, b in self._buckets.items()}

    def bucket(self, target: Target, keys: TargetKeys) -> Bucket:
        """The target's one Bucket (its client and its traffic counts); workers' threads
        ask at once, so it is made under a lock."""
        with self._lock:
            if target.name not in self._buckets:
                self._buckets[target.name] = self._make_bucket(target, keys)
            return self._buckets[target.name]

    async def send(self, target: Target, keys: TargetKeys, roots: Sequence[str],
                   deadline: float) -> int:
        from ..uploader import UploadFailed

        try:
            return await self._send(target, keys, roots, deadline)
        except S3Failure as exc:
            raise UploadFailed(exc.kind, exc.message, target_wide=exc.target_wide) from exc

    async def _send(self, target: Target, keys: TargetKeys, roots: Sequence[str],
                    deadline: float) -> int:
        bucket = await asyncio.to_thread(self.bucket, target, keys)
        closure = closure_order(await self._closure(roots, deadline, keys))
        claims = self._claims.setdefault(target.name, {})
        have, missing = await self._missing(bucket, closure, claims, deadline)
        log.info("%s: %d of %d closure path(s) missing from %s", target.name, len(missing),
                 len(closure), bucket.where.describe())
        # Derivation installables (DRV^out, uploader.py): their realisations go up too, also
        # when the bucket has every path already.
        derived = [r for r in roots if not storepath_like(r)]
        if not missing and not derived:
            return 0
        done = asyncio.Event()
        for info in missing:
            claims[info.path] = done
        try:
            await self._stage_and_upload(target, keys, bucket, have=have, missing=missing,
                                         deadline=deadline, derived=derived)
        finally:
            for info in missing:
                claims.pop(info.path, None)
            done.set()
        return len(missing)

    async def _missing(self, bucket: Bucket, closure: list[pathinfo.PathInfo],
                       claims: dict[str, asyncio.Event], deadline: float
                       ) -> tuple[dict[str, bytes], list[pathinfo.PathInfo]]:
        """(narinfos the bucket has, closure paths it lacks), once no other batch of this
        daemon is uploading any of the lacking ones: a batch waits for the others' paths
        rather than upload them twice. It holds no claim while it waits (no deadlock), and
        claims what it lacks with no await in between (one event loop: atomic)."""
        names = [narinfo_name(i.path) for i in closure]
        while True:
            have = await asyncio.to_thread(bucket.get_many, names)
            missing = [i for i, n in zip(closure, names, strict=True) if n not in have]
            busy = {claims[i.path] for i in missing if i.path in claims}
            if not busy:
                return have, missing
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise S3Failure("transient", "upload_timeout reached while another batch "
                                "uploaded paths of this closure")
            waits = [asyncio.ensure_future(e.wait()) for e in busy]
            _, pending = await asyncio.wait(waits, timeout=remaining)
            for task in pending:
                task.cancel()

    async def _stage_and_upload(self, target: Target, keys: TargetKeys, bucket: Bucket, *,
                                have: Mapping[str, bytes], missing: list[pathinfo.PathInfo],
                                deadline: float, derived: Sequence[str] = ()) -> None:
        async with self._area.batch(target.name) as stage:
            for name, text in have.items():
                (stage / name).write_bytes(text)
            sent = set(have)
            for chunk in chunks(missing, self._budget):
                if time.monotonic() > deadline:
                    raise S3Failure("transient", "upload_timeout reached between chunks; the "
                                    "next attempt sends the rest")
                async with self._area.reserve(sum(i.nar_size or 0 for i in chunk)):
                    await self._stage(target, keys, stage, [i.path for i in chunk], deadline)
                    sent |= await asyncio.to_thread(self._upload, target, bucket, stage, sent)
            if derived:
                # Every path's narinfo is staged by now: this writes only realisations/.
                await self._stage(target, keys, stage, derived, deadline)
                await asyncio.to_thread(self._upload, target, bucket, stage, sent)

    async def _closure(self, roots: Sequence[str], deadline: float,
                       keys: TargetKeys) -> list[pathinfo.PathInfo]:
        argv = self._nix.path_info_json(roots, options=("--recursive",))
        result = await self._run(argv, deadline, keys, "nix path-info")
        try:
            return pathinfo.parse_path_infos(result.stdout)
        except pathinfo.PathInfoError as exc:
            raise S3Failure("permanent", str(exc)) from exc

    async def _stage(self, target: Target, keys: TargetKeys, stage: Path,
                     paths: Sequence[str], deadline: float) -> None:
        url = with_params(f"file://{stage}", binary_cache_params(target, keys))
        argv = self._nix.nix("copy", *_NO_NARINFO_CACHE, "--to", url, *paths)
        await self._run(argv, deadline, keys, "nix copy (to the staging cache)")

    def _upload(self, target: Target, bucket: Bucket, stage: Path, sent: set[str]
                ) -> set[str]:
        """Upload what the last `nix copy` staged; the keys of the narinfos it sent."""
        fresh: dict[str, NarInfo] = {}
        for file in sorted(stage.glob("*.narinfo")):
            if file.name not in sent:
                fresh[file.name[:-len(".narinfo")]] = parse_narinfo(file.read_text("utf-8"))
        nars = [Upload(info.url, stage / info.url, delete_after=True)
                for info in fresh.values()]
        absent = [n.key for n in nars if not n.file.exists()]
        if absent:
            raise S3Failure("transient", f"nix copy staged narinfos without their NARs: "
                            f"{', '.join(absent[:3])}")
        bucket.put_many(nars)
        if target.name not in self._cache_info:
            if not bucket.has(CACHE_INFO) and (stage / CACHE_INFO).exists():
                bucket.put(Upload(CACHE_INFO, stage / CACHE_INFO))
            self._cache_info.add(target.name)
        for layer in layers(fresh):
            bucket.put_many(Upload(f"{h}.narinfo", stage / f"{h}.narinfo") for h in layer)
        realisations = stage / "realisations"
        if realisations.is_dir():
            bucket.put_many(Upload(f"realisations/{f.name}", f, delete_after=True)
                            for f in sorted(realisations.iterdir()) if f.is_file())
        log.info("%s: uploaded %d NAR(s) and their narinfos", target.name, len(nars))
        return {f"{h}.narinfo" for h in fresh}


def bucket_has(transport: object, env: Mapping[str, str], target: Target, keys: TargetKeys,
               path: str) -> bool:
    """Whether the target's bucket has `path`'s narinfo, asked with the transport's client
    (a new one before the first upload); False when it cannot be asked (uploading again is
    the safe side)."""
    try:
        bucket = (transport.bucket(target, keys) if isinstance(transport, S3Transport)
                  else boto3_bucket(env)(target, keys))
        return bucket.has(narinfo_name(path))
    except S3Failure as exc:
        log.warning("target %s: cannot look up %s (%s); uploading it again", target.name,
                    path, exc)
        return False
