"""What users run: the schema's defaults on real content, beside the Nix manual's hook.

Content: store paths of this host's shared libraries and executables (bench/compression.py
stages them), so compression does real work. Two parts:

- drain: the daemon with the schema's defaults (nothing set but the target and its key)
  uploads every path into a fresh file:// cache, timed from the `push` to an empty queue;
  beside it one `nix copy` of the same paths at zstd (the fastest real compression; the
  goal is <= 1.5x of it);
- build loop: N `nix-build`s of small fresh derivations, one after another, each timed, with
  (a) no hook, (b) the manual's hook at its defaults (`nix store sign` + `nix copy`, xz),
  (c) our generated hook with the daemon up and idle, (e) our hook while the daemon drains
  a backlog of real content the whole time (bench/backlog.py: each time it has landed, the
  cache loses it and it is pushed again) into a file:// cache on this machine's disk, (f)
  the same into an HTTP cache on another host (nginx in a network namespace, its files on
  a tmpfs), as with S3 or a cache server. Hook time is measured by a
  /bin/sh wrapper around the hook (`date +%s%N` before and after: ~1 ms of it is that).
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nix_push_queue.nix.isolated import IsolatedNix

from . import cachehost, compression, product
from .backlog import Backlog
from .common import MIB, BenchResult, blob_derivation, summary_ms

Wrap = Callable[[list[str]], list[str]]

COLUMNS = [
    ("part", "part"), ("label", "case"), ("n", "builds / paths"), ("mib", "MiB"),
    ("seconds", "seconds"), ("vs_zstd", "vs nix copy zstd"),
    ("wall_p50_ms", "build p50 ms"), ("wall_p99_ms", "build p99 ms"),
    ("over_p50_ms", "p50 over no hook"), ("over_p99_ms", "p99 over no hook"),
    ("hook_p50_ms", "hook p50 ms"), ("hook_p99_ms", "hook p99 ms"),
    ("backlog_rounds", "backlog drains begun during loop"),
    ("backlog_busy", "share of loop with backlog uploading"),
]


@dataclass(frozen=True)
class Params:
    builds: int
    paths: int  # real-content store paths in the backlog / drain
    mib_per_path: int


def default_params(quick: bool, builds: int | None = None, paths: int | None = None) -> Params:
    if quick:
        return Params(builds or 4, paths or 2, 1)
    return Params(builds or 100, paths or 24, 16)


def real_paths(nix: IsolatedNix, work: Path, params: Params) -> tuple[list[str], int]:
    """`params.paths` store paths of host libraries and executables; their NAR bytes."""
    paths = []
    for i in range(params.paths):
        content = ("libraries", "executables")[i % 2]
        staged = work / f"stage-{i}"
        # each path a different slice of the host's files, so no two are the same
        compression.stage(staged, content, (params.mib_per_path + i // 2) * MIB)
        paths.append(nix.run(["nix-store", "--add", str(staged)]).stdout.strip())
        subprocess.run(["rm", "-rf", str(staged)], check=True)
    sizes = nix.run(["nix-store", "--query", "--size", *paths]).stdout.split()
    return paths, sum(int(s) for s in sizes)


def _copy(nix: IsolatedNix, paths: list[str], cache: Path, key: Path, query: str) -> float:
    t0 = time.perf_counter()
    nix.run(["nix", "copy", "--to", f"file://{cache}?{query}secret-key={key}", *paths],
            timeout=3600)
    return time.perf_counter() - t0


def drain_rows(nix: IsolatedNix, work: Path, paths: list[str], nbytes: int,
               log: Callable[[str], None]) -> list[dict[str, Any]]:
    key, pub = nix.generate_key("bench-1", work)
    mib = round(nbytes / MIB, 1)
    zstd = _copy(nix, paths, work / "copy-zstd", key, "compression=zstd&")
    layout = product.Layout(work / "npq-drain")
    product.write_config(layout, nix, [{"name": "c", "url": f"file://{work / 'daemon-cache'}",
                                        "secret_key_file": str(key), "public_key": pub}])
    with product.running_daemon(layout, nix) as daemon:
        t0 = time.perf_counter()
        product.request(layout.socket, {"op": "enqueue", "paths": paths, "source": "push"})
        drained = daemon.wait_drained(3600)
        seconds = time.perf_counter() - t0 if drained is not None else float("nan")
    log(f"defaults drain: daemon {seconds:.2f} s, nix copy zstd {zstd:.2f} s")
    rows = []
    # (xz, Nix's own default, is in bench/compression.py: ~85x slower than zstd)
    for label, secs in (("daemon, schema defaults", seconds), ("nix copy, zstd", zstd)):
        rows.append({"part": "drain", "label": label, "n": len(paths), "mib": mib,
                     "seconds": round(secs, 2), "vs_zstd": round(secs / zstd, 2)})
    return rows


def _loop(nix: IsolatedNix, n: int) -> list[float]:
    nonce, walls = secrets.token_hex(8), []
    for i in range(n):
        expr = blob_derivation(f"loop-{i}", 4096, f"{nonce}-{i}")
        t0 = time.perf_counter()
        proc = subprocess.run(["nix-build", "--no-out-link", "-E", expr], env=nix.env(),
                              capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"nix-build failed: {proc.stderr[-600:]}")
        walls.append(time.perf_counter() - t0)
    return walls


@dataclass(frozen=True)
class Cell:
    label: str
    backlog: bool  # real content added to the store and pushed just before the loop
    hook: str | None  # None, "manual" or "ours"
    remote: bool = False  # the target is an HTTP cache on another host, not file:// here


CELLS = (Cell("(a) no hook", False, None), Cell("(b) manual's hook, its defaults", False, "manual"),
         Cell("(c) ours, daemon up, idle", False, "ours"),
         Cell("(e) ours, daemon draining the backlog", True, "ours"),
         Cell("(f) ours, daemon draining the backlog to a remote cache", True, "ours", True))


@contextlib.contextmanager
def _target(root: Path, remote: bool) -> Iterator[tuple[str, Path, Wrap]]:
    """(URL, the directory its files land in, how to run the daemon) for one cell's cache.

    file:// writes the uploads to this machine's disk, beside the store and the spool. The
    remote cache is nginx WebDAV in its own network namespace (bench/cachehost.py) with its
    files on a tmpfs: another host's disk, which this machine's fsyncs never wait for."""
    if not remote:
        yield f"file://{root / 'cache'}", root / "cache", list
        return
    host = root / "remote"
    host.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "npq-bench", str(host)],
                   check=True)
    try:
        with cachehost.network(host) as net:
            yield net.url, net.cache_dir, net.argv
    finally:
        subprocess.run(["umount", "-l", str(host)], check=False)


def _cell(work: Path, cell: Cell, params: Params) -> dict[str, Any]:
    """One build-loop cell in a fresh Nix."""
    root = work / f"cell-{cell.label[1]}"  # "(a) …" -> cell-a: no shell-special characters
    nix = IsolatedNix.create(root / "nix")
    paths = real_paths(nix, root, params)[0] if cell.backlog else []
    timings = root / "hook-timings.txt"
    key, pub = nix.generate_key("bench-1", root)
    row: dict[str, Any] = {"part": "build loop", "label": cell.label}
    if cell.hook == "manual":
        script = product.manual_hook(root, key, f"file://{root / 'cache'}")
        product.install_timed_hook(nix, str(script), timings)
        walls = _loop(nix, params.builds)
    elif cell.hook == "ours":
        with _target(root, cell.remote) as (url, cache, wrap):
            walls = _ours(nix, root, (url, key, pub), paths, cache, wrap, params, row)
    else:
        walls = _loop(nix, params.builds)
    hooks, _ = product.read_timings(timings)
    wall, hk = summary_ms(walls), summary_ms(hooks)
    row.update(n=len(walls), wall_p50_ms=wall["p50_ms"], wall_p99_ms=wall["p99_ms"],
               hook_p50_ms=hk["p50_ms"] if hooks else None,
               hook_p99_ms=hk["p99_ms"] if hooks else None)
    return row


def _ours(nix: IsolatedNix, root: Path, target: tuple[str, Path, str], paths: list[str],
          cache: Path, wrap: Wrap, params: Params, row: dict[str, Any]) -> list[float]:
    """The build loop under our hook, the daemon up; with `paths`, it drains them all the
    while (bench/backlog.py)."""
    url, key, pub = target
    layout = product.Layout(root / "npq")
    product.write_config(layout, nix, [{"name": "c", "url": url, "secret_key_file": str(key),
                                        "public_key": pub}])
    product.install_timed_hook(nix, product.hook_command(layout), root / "hook-timings.txt")
    with product.running_daemon(layout, nix, wrap) as daemon:
        if not paths:
            walls = _loop(nix, params.builds)
        else:
            with Backlog(layout.socket, paths, cache) as feeder:
                time.sleep(0.5)  # the workers have started uploading
                walls = _loop(nix, params.builds)
            if feeder.error:
                raise RuntimeError(f"the backlog feeder failed: {feeder.error}")
            row.update(backlog_rounds=feeder.rounds, backlog_busy=feeder.busy_fraction())
        daemon.wait_drained(3600)
    return walls


def run(workdir: Path, params: Params, log: Callable[[str], None]) -> BenchResult:
    result = BenchResult("defaults", "What users run: schema defaults on real content",
                         params.__dict__, COLUMNS)
    nix = IsolatedNix.create(workdir / "nix")
    paths, nbytes = real_paths(nix, workdir, params)
    result.rows += drain_rows(nix, workdir, paths, nbytes, log)
    for cell in CELLS:
        if cell.remote and (why := cachehost.unavailable_reason()):
            result.notes.append(f"{cell.label}: not run ({why})")
            continue
        row = _cell(workdir, cell, params)
        log(f"defaults build loop {cell.label}: p50 {row['wall_p50_ms']} ms, "
            f"p99 {row['wall_p99_ms']} ms, hook p50 {row['hook_p50_ms']}")
        result.rows.append(row)
    loop = [r for r in result.rows if r["part"] == "build loop"]
    for row in loop[1:]:
        row["over_p50_ms"] = round(row["wall_p50_ms"] - loop[0]["wall_p50_ms"], 1)
        row["over_p99_ms"] = round(row["wall_p99_ms"] - loop[0]["wall_p99_ms"], 1)
    floor = summary_ms(product.timing_floor(workdir))["p50_ms"]
    result.notes.append(f"hook times include the timing wrapper's own {floor} ms p50 (its two "
                        "`date` calls around an empty hook, measured on this run)")
    result.headline = _headline(result.rows, floor)
    return result


def _headline(rows: list[dict[str, Any]], floor: float) -> dict[str, Any]:
    by = {r["label"]: r for r in rows}
    hook = by["(c) ours, daemon up, idle"]["hook_p50_ms"]
    drain = by["daemon, schema defaults"]
    head = {
        "drain vs nix copy zstd (goal <= 1.5)": drain["vs_zstd"],
        "hook p50 ms (goal <= 5)": hook,
        "hook p50 ms less the timing wrapper's floor": round(hook - floor, 2),
    }
    for cell, where in ((CELLS[3], "file:// here"), (CELLS[4], "remote cache")):
        if cell.label in by:
            draining = by[cell.label]
            head[f"build p50 over no hook while draining to {where} (goal <= 5 ms)"] = \
                draining["over_p50_ms"]
            head[f"build p99 over no hook while draining to {where} (goal <= 15 ms)"] = \
                draining["over_p99_ms"]
    return head
