"""Which compression a binary cache should get: speed, size and time to land, on real content.

Content (each one store path, copied from this host): shared libraries, executables, a
source tree (C headers: text), and random bytes (incompressible). Each method uploads every
path with one `nix copy --to file://…?compression=…` into a fresh cache, signing as the
daemon does; the time is the whole `nix copy` (compression is in it), the size is the
NARs the cache holds.

Time to land over a network profile: `nix copy` compresses each NAR before it sends it, so
the time over a link is the local time plus the compressed bytes at the link's rate
(bench/cachehost.py's `slow` profile, 10 Mbit/s, and a 100 Mbit/s uplink).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nix_push_queue.nix.isolated import IsolatedNix

from .common import MIB, BenchResult

COLUMNS = [
    ("content", "content"), ("method", "method"), ("mib", "NAR MiB"),
    ("seconds", "nix copy s"), ("mib_per_s", "MiB/s"), ("ratio", "size / NAR"),
    ("land_100mbit_s", "to land at 100 Mbit/s s"), ("land_10mbit_s", "to land at 10 Mbit/s s"),
]
# (label, URL parameters); "xz" is Nix's own default (level 6, one thread)
METHODS: tuple[tuple[str, str], ...] = (
    ("none", "compression=none"),
    ("xz (Nix's default)", "compression=xz"),
    ("xz, parallel", "compression=xz&parallel-compression=true"),
    ("zstd -1", "compression=zstd&compression-level=1"),
    ("zstd (default, 3)", "compression=zstd"),
    ("zstd -9", "compression=zstd&compression-level=9"),
    ("zstd, parallel", "compression=zstd&parallel-compression=true"),
    ("zstd -19", "compression=zstd&compression-level=19"),
)
LINKS_MBIT = {"100mbit": 100, "10mbit": 10}
# content -> (host directories, file filter)
SOURCES: dict[str, tuple[tuple[str, ...], Callable[[Path], bool]]] = {
    "libraries": (("/usr/lib/x86_64-linux-gnu", "/usr/lib"), lambda p: ".so" in p.name),
    "executables": (("/usr/bin", "/usr/sbin"), lambda p: os.access(p, os.X_OK)),
    "source tree": (("/usr/include",), lambda p: p.suffix in (".h", ".hpp", ".c", ".def")),
}


@dataclass(frozen=True)
class Params:
    mib_per_content: int
    random_mib: int
    methods: tuple[str, ...]  # labels from METHODS


def default_params(quick: bool) -> Params:
    if quick:
        return Params(2, 1, ("none", "zstd (default, 3)"))
    return Params(48, 16, tuple(label for label, _ in METHODS))


def _files(dirs: tuple[str, ...], keep: Callable[[Path], bool]) -> Iterator[Path]:
    for top in dirs:
        for root, _, names in os.walk(top):
            for name in sorted(names):
                path = Path(root) / name
                if path.is_file() and not path.is_symlink() and keep(path):
                    yield path


def stage(dest: Path, content: str, limit: int) -> int:
    """Copy up to `limit` bytes of `content`'s host files into `dest`; the bytes copied."""
    dest.mkdir(parents=True)
    if content == "random":
        with open(dest / "random.bin", "wb") as out:
            out.write(os.urandom(limit))
        return limit
    dirs, keep = SOURCES[content]
    total = 0
    for i, path in enumerate(_files(dirs, keep)):
        try:
            size = path.stat().st_size
            if size == 0 or total + size > limit:
                continue
            shutil.copyfile(path, dest / f"{i:05d}-{path.name}")
        except OSError:
            continue
        total += size
        if total > limit * 0.95:
            break
    return total


def _nar_bytes(cache: Path) -> int:
    return sum(f.stat().st_size for f in (cache / "nar").iterdir())


def measure(nix: IsolatedNix, key: Path, path: str, cache: Path, query: str) -> tuple[float, int]:
    """Seconds of one `nix copy` of `path` into a fresh `cache`, and the NAR bytes it holds."""
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    nix.run(["nix", "copy", "--to", f"file://{cache}?{query}&secret-key={key}", path],
            timeout=1800)
    return time.perf_counter() - t0, _nar_bytes(cache)


def _row(content: str, label: str, nar: int, seconds: float, size: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "content": content, "method": label, "mib": round(nar / MIB, 1),
        "seconds": round(seconds, 2), "mib_per_s": round(nar / MIB / seconds, 1),
        "ratio": round(size / nar, 3), "bytes": size}
    for name, mbit in LINKS_MBIT.items():
        row[f"land_{name}_s"] = round(seconds + size * 8 / (mbit * 1e6), 2)
    return row


def run(workdir: Path, params: Params, log: Callable[[str], None]) -> BenchResult:
    result = BenchResult("compression", "Binary-cache compression on real content",
                         params.__dict__ | {"methods": ", ".join(params.methods)}, COLUMNS)
    nix = IsolatedNix.create(workdir / "nix")
    key, _ = nix.generate_key("bench-1", workdir)
    chosen = [(label, q) for label, q in METHODS if label in params.methods]
    for content in (*SOURCES, "random"):
        limit = (params.random_mib if content == "random" else params.mib_per_content) * MIB
        staged = workdir / "stage" / content.replace(" ", "-")
        copied = stage(staged, content, limit)
        path = nix.run(["nix-store", "--add", str(staged)]).stdout.strip()
        shutil.rmtree(staged)
        nar = int(nix.run(["nix-store", "--query", "--size", path]).stdout.strip())
        log(f"compression: {content}: {copied / MIB:.1f} MiB of files, NAR {nar / MIB:.1f} MiB")
        for label, query in chosen:
            seconds, size = measure(nix, key, path, workdir / "cache", query)
            result.rows.append(_row(content, label, nar, seconds, size))
            log(f"compression: {content} {label}: {seconds:.2f} s, {size / MIB:.1f} MiB")
    result.headline = _headline(result.rows)
    return result


def _headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over all content per method: what a mixed closure costs."""
    totals: dict[str, list[float]] = {}
    for row in rows:
        t = totals.setdefault(row["method"], [0.0, 0.0])
        t[0] += row["seconds"]
        t[1] += row["bytes"] / MIB
    return {f"{m}: s / MiB": f"{s:.1f} / {b:.1f}" for m, (s, b) in totals.items()}
