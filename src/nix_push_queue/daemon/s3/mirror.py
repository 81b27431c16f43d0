"""A bucket's paths copied into a local `file://` cache, with boto3: how `verify` (and the
tests) read a bucket that checks signatures on a Nix that cannot sign S3 requests.

Only the asked store paths' closures travel: their narinfos (following References) and
NARs, and `nix-cache-info`. Nix then checks signatures and substitutes from the copy exactly
as it would from the bucket.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ...nix.storepath import hash_part
from .bucket import Bucket
from .staging import CACHE_INFO, parse_narinfo


def mirror(bucket: Bucket, dest: Path, store_paths: Iterable[str]) -> list[str]:
    """Copy the closures of `store_paths` that the bucket holds into `dest`; the store paths
    whose narinfo the bucket lacks (the closure's missing parts)."""
    dest.mkdir(parents=True, exist_ok=True)
    info = bucket.get(CACHE_INFO)
    if info is not None:
        (dest / CACHE_INFO).write_bytes(info)
    todo = {hash_part(p) for p in store_paths}
    seen: set[str] = set()
    missing: list[str] = []
    while todo:
        wanted = sorted(todo - seen)
        seen |= todo
        found = bucket.get_many([f"{h}.narinfo" for h in wanted])
        todo = set()
        for h in wanted:
            text = found.get(f"{h}.narinfo")
            if text is None:
                missing.append(h)
                continue
            narinfo = parse_narinfo(text.decode("utf-8"))
            nar = bucket.get(narinfo.url)
            if nar is not None:
                (dest / narinfo.url).parent.mkdir(parents=True, exist_ok=True)
                (dest / narinfo.url).write_bytes(nar)
            (dest / f"{h}.narinfo").write_bytes(text)
            todo |= {r[:32] for r in narinfo.references}
    return missing
