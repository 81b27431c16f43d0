"""The staging area: where Nix writes a `file://` binary cache for the S3 transport.

Each batch gets its own directory `<root>/<target>/<random>`, removed when the batch ends
(and any left by a killed daemon at the next start): a batch never trusts what another
wrote. Nix writes `nix-cache-info`, `<hash>.narinfo`, `nar/<filehash>.nar.<ext>` and, for
content-addressed derivations, `realisations/`. The transport seeds the narinfos of what
the bucket already has (Nix refuses a path whose references are not valid in the
destination), and deletes each NAR once it is in the bucket.

Size cap: a batch's missing paths are staged in chunks whose NAR sizes (uncompressed, an
upper bound of what compression leaves, give or take a header) fit the cap, and each chunk
reserves its bytes before Nix writes them; a chunk waits while others hold the area. A
single path larger than the whole cap is staged alone when the area is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...nix.pathinfo import PathInfo

log = logging.getLogger(__name__)

CACHE_INFO = "nix-cache-info"


@dataclass(frozen=True)
class NarInfo:
    store_path: str
    url: str  # the NAR's key, relative to the cache root
    references: tuple[str, ...]  # base names, as narinfos list them


def parse_narinfo(text: str) -> NarInfo:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields.setdefault(key, value)
    if "StorePath" not in fields or "URL" not in fields:
        raise ValueError(f"not a narinfo (no StorePath or URL): {text[:120]!r}")
    refs = tuple(fields.get("References", "").split())
    return NarInfo(fields["StorePath"], fields["URL"], refs)


def closure_order(infos: Iterable[PathInfo]) -> list[PathInfo]:
    """References before the paths that refer to them (a cycle-safe depth-first order)."""
    by_path = {i.path: i for i in infos}
    order: list[PathInfo] = []
    seen: set[str] = set()
    for root in sorted(by_path):
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            path, expanded = stack.pop()
            if expanded:
                order.append(by_path[path])
                continue
            if path in seen:
                continue
            seen.add(path)
            stack.append((path, True))
            refs = [r for r in by_path[path].references if r in by_path and r not in seen]
            stack.extend((r, False) for r in sorted(refs, reverse=True))
    return order


def chunks(ordered: Sequence[PathInfo], budget: int) -> list[list[PathInfo]]:
    """Consecutive runs of `ordered` whose NAR sizes add up to at most `budget` (a path
    larger than the budget makes a chunk of its own)."""
    out: list[list[PathInfo]] = []
    current: list[PathInfo] = []
    size = 0
    for info in ordered:
        nar = info.nar_size or 0
        if current and size + nar > budget:
            out.append(current)
            current, size = [], 0
        current.append(info)
        size += nar
    if current:
        out.append(current)
    return out


def layers(narinfos: Mapping[str, NarInfo]) -> list[list[str]]:
    """Hash parts of `narinfos` in layers: each layer refers only to earlier ones (or to
    what the bucket already had), so narinfos can go up one layer at a time, concurrently."""
    by_base = {os.path.basename(n.store_path): h for h, n in narinfos.items()}
    depth: dict[str, int] = {}

    def level(h: str, trail: frozenset[str]) -> int:
        if h not in depth:
            refs = [by_base[r] for r in narinfos[h].references
                    if r in by_base and by_base[r] != h and by_base[r] not in trail]
            depth[h] = 1 + max((level(r, trail | {h}) for r in refs), default=-1)
        return depth[h]

    for h in sorted(narinfos):
        level(h, frozenset())
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for h in sorted(depth):
        out[depth[h]].append(h)
    return out


def tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


class StagingArea:
    """The daemon's staging directory and its byte budget, shared by every S3 target."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._reserved = 0
        self._changed = asyncio.Condition()

    def clear(self) -> int:
        """Remove what a previous run left (a killed daemon's batches); bytes freed."""
        if not self.root.exists():
            return 0
        freed = tree_bytes(self.root)
        for child in self.root.iterdir():
            shutil.rmtree(child, ignore_errors=True)
        if freed:
            log.info("staging: removed %d bytes left by a previous run in %s", freed, self.root)
        return freed

    def held(self, target: str | None = None) -> int:
        """Bytes on disk in the area (of one target's batches)."""
        root = self.root / target if target else self.root
        return tree_bytes(root) if root.exists() else 0

    @contextlib.asynccontextmanager
    async def batch(self, target: str) -> AsyncIterator[Path]:
        directory = self.root / target / secrets.token_hex(8)
        directory.mkdir(parents=True, mode=0o700)
        try:
            yield directory
        finally:
            await asyncio.to_thread(shutil.rmtree, directory, True)

    @contextlib.asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        """Hold `size` bytes of the budget while Nix stages and boto3 uploads a chunk."""
        size = min(size, self.max_bytes)
        async with self._changed:
            await self._changed.wait_for(lambda: self._reserved + size <= self.max_bytes
                                         or self._reserved == 0)
            self._reserved += size
        try:
            yield
        finally:
            async with self._changed:
                self._reserved -= size
                self._changed.notify_all()
